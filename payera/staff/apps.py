from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


def _sync_roles_after_migrate(sender, using="default", **kwargs):
    # post_migrate is sent once per app; sync once, after the last one, when every app's
    # permissions exist (auth's create_permissions ran before us for each app).
    with_models = [config for config in apps.get_app_configs() if config.models_module is not None]
    if not with_models or sender.label != with_models[-1].label:
        return
    from payera.staff.roles import sync_roles

    sync_roles(using=using)


class StaffConfig(AppConfig):
    name = "payera.staff"
    label = "staff"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Back-office staff"

    def ready(self) -> None:
        post_migrate.connect(_sync_roles_after_migrate, dispatch_uid="payera_staff_sync_roles")
