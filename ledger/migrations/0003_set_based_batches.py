"""Reload the PostgreSQL posting functions: set-based batches (one query for the accounts, one for
the references, one INSERT for the journals) and the lost-race fallback in
ledger_post_batch_atomic(). ledger/sql/postgresql.sql is idempotent; SQLite has nothing to reload.
"""

from django.db import migrations

from ledger.migrations._sql import reload_postgresql_functions


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0002_invariants")]
    operations = [migrations.RunPython(reload_postgresql_functions, migrations.RunPython.noop, elidable=False)]
