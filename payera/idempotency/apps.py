from django.apps import AppConfig


class IdempotencyConfig(AppConfig):
    name = "payera.idempotency"
    label = "idempotency"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Idempotency keys"
