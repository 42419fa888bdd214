"""ledger_post_batch reads each account's status and limit flags from the rows it has locked (review
14c): before, it read them with the account lookup, before any lock, and never again, so a batch
(journal_post_many, pending_post, pending_void, a single journal after 'retry') that waited behind a
freeze posted to the frozen account, and one that waited behind a change of a limit flag checked the
old flag. A hot account's status is its locked shard's and its parent's, as ledger_post_one reads
them. PostgreSQL only: the functions are replaced (section 4 on of ledger/sql/postgresql.sql); no
schema change.
"""

from django.db import migrations

from ledger.migrations._sql import reload_postgresql_functions


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        reload_postgresql_functions(apps, schema_editor)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0011_sqlite_journal_seal")]
    operations = [migrations.RunPython(apply, migrations.RunPython.noop, elidable=False)]
