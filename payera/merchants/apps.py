from django.apps import AppConfig


class MerchantsConfig(AppConfig):
    name = "payera.merchants"
    label = "merchants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from payera.audit import registry
        from payera.merchants.api import schema  # noqa: F401  (registers the OpenAPI auth scheme)
        from payera.merchants.models import ApiKey, Merchant

        registry.register(Merchant)
        registry.register(ApiKey, exclude_fields=["secret_hash"])
