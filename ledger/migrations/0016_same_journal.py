"""A repeated reference answers `exists` or `reference_conflict` by one comparison,
ledger_same_posting() (and ledger_same_journal() for a stored journal), instead of four copies of it
in ledger_post_batch (a repeat earlier in the batch, a stored journal), ledger_post_one and
ledger_post_batch_atomic's overflow rerun (session 20). The same answers but one: the overflow rerun
found its lines' accounts by an inner join on their keys, which dropped a line on an account the
undone call had created, so a repeat with more lines than the stored journal could answer `exists`;
a missing account is now NULL, a conflict (tests/ledger/test_same_journal.py). PostgreSQL only: the
functions are replaced (section 4 on of ledger/sql/postgresql.sql); no schema change.
"""

from django.db import migrations

from ledger.migrations._sql import reload_postgresql_functions


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        reload_postgresql_functions(apps, schema_editor)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0015_posting_overflow")]
    operations = [migrations.RunPython(apply, migrations.RunPython.noop, elidable=False)]
