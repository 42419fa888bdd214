"""Create the back-office role groups (payera/staff/roles.py) with the permissions that exist at
this point. The post_migrate handler completes them after every migrate, so permissions of
apps migrated later are assigned the day they land."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_role_groups(apps, schema_editor):
    from payera.staff.roles import sync_roles

    for app_config in apps.get_app_configs():
        app_config.models_module = True  # historical app configs: let create_permissions run
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        app_config.models_module = None
    sync_roles(using=schema_editor.connection.alias, apps=apps)


class Migration(migrations.Migration):
    dependencies = [
        ("staff", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_role_groups, migrations.RunPython.noop)]
