from django.apps import AppConfig


class PaymentsBackofficeConfig(AppConfig):
    name = "payments.backoffice"
    label = "payments_backoffice"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Payments back office"

    def ready(self) -> None:
        from payera.audit import registry
        from payments.backoffice import models, panels

        registry.register(models.RefundApproval)
        panels.register()
