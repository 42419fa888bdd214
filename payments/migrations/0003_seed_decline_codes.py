"""Seed the admin-editable decline-code table from the adapters' default maps."""

from django.db import migrations


def seed(apps, schema_editor):
    from psp_adapters.codes import seed_rows

    DeclineCode = apps.get_model("payments", "DeclineCode")
    for row in seed_rows():
        DeclineCode.objects.update_or_create(
            psp=row["psp"], psp_code=row["psp_code"],
            defaults={"code": row["code"], "decline_class": row["decline_class"]},
        )


class Migration(migrations.Migration):
    dependencies = [("payments", "0002_payments_core")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
