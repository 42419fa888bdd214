"""The posting functions stamp a journal's created_at with the clock after the account locks
(clock_timestamp()), not the statement's start: on every account created_at then follows the
versions and account_balance_at() is right under contention (#4 audit finding 8). PostgreSQL only:
the functions are replaced (section 4 on of ledger/sql/postgresql.sql); no schema change. The
Python engine (SQLite) inserts the journal after taking its locks already. The same reload brings
ledger_post_batch's `exceeds_pending_amount` (#4 audit finding 7: a post moves no more than its
pending journal reserved).
"""

from django.db import migrations

from ledger.migrations._sql import reload_postgresql_functions


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        reload_postgresql_functions(apps, schema_editor)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0008_account_status_check")]
    operations = [migrations.RunPython(apply, migrations.RunPython.noop, elidable=False)]
