from django.apps import AppConfig


class SecretsConfig(AppConfig):
    name = "payera.secrets"
    label = "secrets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from payera.secrets import checks  # noqa: F401 - registers the system checks
