from django.apps import AppConfig


class MerchantsConfig(AppConfig):
    name = "payera.merchants"
    label = "merchants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from payera.merchants.api import schema  # noqa: F401  (registers the OpenAPI auth scheme)
        from payera.merchants.models import ApiKey, Merchant

        auditlog.register(Merchant)
        auditlog.register(ApiKey, exclude_fields=["secret_hash"])
