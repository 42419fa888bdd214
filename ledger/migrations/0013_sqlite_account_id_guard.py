"""SQLite: an account's id never changes (review 14c). The trigger ledger_account_identity named the
identity columns but not `id`; PostgreSQL's ledger_account_guard refuses an id change (migration
0005). Entries name their account by id with no foreign key, so swapping two accounts' ids handed
one merchant's entries (its balance transactions, and its balance at the next ledger_rebuild) to
another without a journal. ledger/sql/sqlite.sql is loaded again (DROP IF EXISTS / CREATE: nothing
existing is rewritten or re-checked). PostgreSQL: nothing changes.
"""

from django.db import migrations

from ledger.migrations._sql import reload_sqlite_sql

WITHOUT_ID = """
CREATE TRIGGER ledger_account_identity BEFORE UPDATE OF owner, code, currency, type, hot, parent_id, shard
ON ledger_account
BEGIN SELECT RAISE(ABORT, 'ledger: an account''s identity never changes'); END;
"""


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        reload_sqlite_sql(schema_editor)


def unapply(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        cursor = schema_editor.connection.cursor()
        cursor.execute("DROP TRIGGER IF EXISTS ledger_account_identity")
        cursor.execute(WITHOUT_ID)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0012_batch_status_under_lock")]
    operations = [migrations.RunPython(apply, unapply, elidable=False)]
