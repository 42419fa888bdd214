from django.apps import AppConfig


class PspAdaptersConfig(AppConfig):
    name = "psp_adapters"
    default_auto_field = "django.db.models.BigAutoField"
