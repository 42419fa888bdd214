from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class BackofficeConfig(AppConfig):
    name = "payera.backoffice"
    label = "backoffice"
    default = True
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Back office"
    # The runtime database role reads and appends staff actions, nothing more (payera/core/db_roles.py);
    # triggers refuse UPDATE, DELETE and TRUNCATE for everyone anyway (migration 0002).
    db_runtime_grants = {"backoffice_staffaction": ("SELECT", "INSERT")}

    def ready(self) -> None:
        from axes.models import AccessAttempt
        from axes.signals import user_locked_out
        from django.db.models.signals import post_delete
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from payera.audit import registry
        from payera.backoffice import panels, receivers

        user_locked_out.connect(receivers.staff_locked_out, dispatch_uid="payera_backoffice_locked_out")
        # Lifting a lockout (deleting access attempts) is a change to authentication: audited.
        post_delete.connect(receivers.access_attempt_deleted, sender=AccessAttempt,
                            dispatch_uid="payera_backoffice_access_attempt_deleted")
        panels.register_builtin_panels()
        # Enrolling, renaming and removing a staff member's second factor are audited (PCI DSS
        # 10.2.1.5); the key never is, nor the counters every sign-in updates.
        registry.register(TOTPDevice, include_fields=["user", "name", "confirmed"])


class BackofficeAdminConfig(admin_apps.AdminConfig):
    """`django.contrib.admin` with our site as `admin.site` (settings: INSTALLED_APPS)."""

    default = False  # payera.backoffice resolves to BackofficeConfig

    default_site = "payera.backoffice.sites.BackofficeAdminSite"
