"""A line's duplicate flag, apart from its outcome; the row key's uniqueness reads the flag.

`recon_line_key_once` counted a row key once among the lines whose outcome is not "duplicate".
The write-once import (docs/decisions/reconciliation-import-speed.md, "Session 7") writes a line
before it is matched, so the index cannot read the outcome: it reads `duplicate` instead, set for
exactly the lines whose outcome is "duplicate" (existing lines: from their outcome, below, before
the index is built again on the new predicate).
"""

from django.db import migrations, models


def _flag(apps, schema_editor):
    line = apps.get_model("reconciliation", "StatementLine")
    line.objects.filter(outcome="duplicate").update(duplicate=True)


class Migration(migrations.Migration):
    dependencies = [("reconciliation", "0006_line_keys_bytewise")]

    operations = [
        migrations.AddField(model_name="statementline", name="duplicate", field=models.BooleanField(default=False)),
        migrations.RunPython(_flag, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="statementline", name="recon_line_key_once"),
        migrations.AddConstraint(
            model_name="statementline",
            constraint=models.UniqueConstraint(
                condition=models.Q(("duplicate", False)), fields=("row_key",), name="recon_line_key_once"
            ),
        ),
    ]
