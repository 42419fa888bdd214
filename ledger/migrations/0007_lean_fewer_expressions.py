"""ledger_post_one() evaluates fewer PL/pgSQL expressions on its usual path (docs/decisions/
ledger-lean-single-journal.md, "Session 8"), PostgreSQL only: the function is replaced (section 4
on of ledger/sql/postgresql.sql); no schema change. SQLite has nothing to change.
"""

from django.db import migrations

from ledger.migrations._sql import reload_postgresql_functions


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        reload_postgresql_functions(apps, schema_editor)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0006_checks_in_triggers")]
    operations = [migrations.RunPython(apply, migrations.RunPython.noop, elidable=False)]
