"""ledger_same_posting() and ledger_same_journal() (migration 0016) become PL/pgSQL functions with
the same bodies. As SQL functions with subqueries they were not inlined and were planned again on
every call: a repeated reference (a client's retry) spent ~480 µs in the comparison against ~54 µs
for the inline code before 0016 (review r20a, a loop of 5,000 calls on one journal); PL/pgSQL keeps
the plan for the session (~60 µs; the lead's rerun on a two-entry journal: 97 µs before, 20-26 µs
after). Same answers (tests/ledger/test_same_journal.py). PostgreSQL
only: the functions are replaced (section 4 on of ledger/sql/postgresql.sql); no schema change.
"""

from django.db import migrations

from ledger.migrations._sql import reload_postgresql_functions


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        reload_postgresql_functions(apps, schema_editor)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0016_same_journal")]
    operations = [migrations.RunPython(apply, migrations.RunPython.noop, elidable=False)]
