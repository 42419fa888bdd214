"""ledger_post_batch answers a post or void of a pending journal that is resolved already with
`pending_already_resolved` before its expiry, frozen-account and limit checks (before, only the
INSERT's unique index on `pending_id` found it, after them: a second post was refused as
`pending_expired` or `account_frozen`). PostgreSQL only: the functions are replaced (section 4 on
of ledger/sql/postgresql.sql); no schema change.
"""

from django.db import migrations

from ledger.migrations._sql import reload_postgresql_functions


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        reload_postgresql_functions(apps, schema_editor)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0013_sqlite_account_id_guard")]
    operations = [migrations.RunPython(apply, migrations.RunPython.noop, elidable=False)]
