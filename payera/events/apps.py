from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "payera.events"
    label = "events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from payera.audit import registry
        from payera.events.models import WebhookEndpoint

        # Who changed a merchant's endpoints, and when; never the (encrypted) secrets.
        registry.register(
            WebhookEndpoint,
            exclude_fields=["secret_ciphertext", "previous_secret_ciphertext", "updated_at"],
            merchant_field="merchant_id",
        )
