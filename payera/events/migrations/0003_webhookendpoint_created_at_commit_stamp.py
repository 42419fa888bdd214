"""events_webhookendpoint.created_at: the commit stamp of its INSERT (`payera.core.horizon.CommitStampField`,
which deconstructs as this `DateTimeField`), so `GET /v1/webhook_endpoints` lists below the commit
horizon (docs/decisions/commit-horizon.md, session 20). State only: a Python default and
`editable=False`, no SQL (sqlmigrate: no-op) on PostgreSQL and SQLite; the column is unchanged.
"""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0002_drop_unused_indexes"),
    ]

    operations = [
        # state only on every backend: a plain AlterField of `default` rebuilds the table on SQLite
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="webhookendpoint",
                    name="created_at",
                    field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
            ],
        ),
    ]
