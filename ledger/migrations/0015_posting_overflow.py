"""A posting that would take a balance, a pending amount, a version or an entry's balance_after past
bigint is refused with the status `overflow` (BalanceOverflowError), nothing written, instead of a raw
22003 DataError ("bigint out of range") that aborted the caller's transaction (session 19). The
posting functions are replaced (section 4 on of ledger/sql/postgresql.sql): ledger_post_batch takes
`p_guarded` (its old form is dropped), ledger_post_batch_atomic catches the overflow, and
ledger_post_one answers 'retry' for a row near the ends of bigint. PostgreSQL only; no schema change.
"""

from django.db import migrations

from ledger.migrations._sql import reload_postgresql_functions


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        reload_postgresql_functions(apps, schema_editor)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0014_pending_resolved_first")]
    operations = [migrations.RunPython(apply, migrations.RunPython.noop, elidable=False)]
