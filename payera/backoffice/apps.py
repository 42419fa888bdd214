from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class BackofficeConfig(AppConfig):
    name = "payera.backoffice"
    label = "backoffice"
    default = True
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Back office"

    def ready(self) -> None:
        from axes.signals import user_locked_out

        from payera.backoffice import panels, receivers

        user_locked_out.connect(receivers.staff_locked_out, dispatch_uid="payera_backoffice_locked_out")
        panels.register_builtin_panels()


class BackofficeAdminConfig(admin_apps.AdminConfig):
    """`django.contrib.admin` with our site as `admin.site` (settings: INSTALLED_APPS)."""

    default = False  # payera.backoffice resolves to BackofficeConfig

    default_site = "payera.backoffice.sites.BackofficeAdminSite"
