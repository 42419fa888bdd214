"""The run's heartbeat (docs/reconciliation.md "Import once"): an import is busy while it keeps
progressing, not for a fixed time from its start. Existing runs take their last known progress:
when they finished, or when they started. And the run's attempt: which import owns it (a takeover
counts it up; the import it was taken from stops)."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reconciliation", "0014_payout_minimum_per_currency"),
    ]

    operations = [
        migrations.AddField(
            model_name="reconciliationrun",
            name="progress_at",
            field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="attempt",
            field=models.PositiveIntegerField(default=1, editable=False),
        ),
        migrations.RunSQL(
            "UPDATE reconciliation_reconciliationrun SET progress_at = COALESCE(finished_at, created_at)",
            migrations.RunSQL.noop,
        ),
    ]
