"""An account's status is one of AccountStatus ('active', 'frozen'): before, any text was accepted
(and behaved as frozen).

The model gets the CheckConstraint `ledger_account_status_valid` (Django's state and validation;
SQLite enforces it: the table is rebuilt, so the ledger's SQLite triggers are loaded again). On
PostgreSQL, as for the currency and hot-account rules (migration 0006), a row trigger on INSERT and
on an UPDATE naming `status` enforces it instead of the CHECK, which every projection UPDATE of
every posting would evaluate; same constraint name and SQLSTATE (23514). Rows with any other
status, which postings already treated as frozen, become 'frozen' first.
"""

from django.db import migrations, models

from ledger.migrations._sql import reload_sqlite_sql

POSTGRESQL = """
CREATE OR REPLACE FUNCTION ledger_account_refuse_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: account status % is not one of active, frozen', NEW.status
        USING ERRCODE = '23514', CONSTRAINT = 'ledger_account_status_valid';
END $$;
DROP TRIGGER IF EXISTS ledger_account_status_checked ON ledger_account;
CREATE TRIGGER ledger_account_status_checked
    BEFORE INSERT OR UPDATE OF status ON ledger_account FOR EACH ROW
    WHEN (NEW.status NOT IN ('active', 'frozen'))
    EXECUTE FUNCTION ledger_account_refuse_status();
ALTER TABLE ledger_account DROP CONSTRAINT IF EXISTS ledger_account_status_valid;
"""

UNDO_POSTGRESQL = """
DROP TRIGGER IF EXISTS ledger_account_status_checked ON ledger_account;
DROP FUNCTION IF EXISTS ledger_account_refuse_status();
ALTER TABLE ledger_account ADD CONSTRAINT ledger_account_status_valid CHECK (status IN ('active', 'frozen'));
"""


def prepare(apps, schema_editor):
    schema_editor.execute(
        "UPDATE ledger_account SET status = 'frozen' WHERE status NOT IN ('active', 'frozen')", params=None
    )
    if schema_editor.connection.vendor == "sqlite":
        # SQLite rebuilds the table (new table, copy, drop, rename), which a trigger naming it refuses
        drop_sqlite_triggers(schema_editor)


def drop_sqlite_triggers(schema_editor):
    cursor = schema_editor.connection.cursor()
    cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'ledger%'")
    for (name,) in cursor.fetchall():
        cursor.execute(f'DROP TRIGGER "{name}"')


def reload_sqlite_triggers_after(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        reload_sqlite_sql(schema_editor)


def apply(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL, params=None)
    elif vendor == "sqlite":  # dropped by prepare() for the table rebuild
        reload_sqlite_sql(schema_editor)


def unapply(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(UNDO_POSTGRESQL, params=None)
    elif vendor == "sqlite":
        drop_sqlite_triggers(schema_editor)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0007_lean_fewer_expressions")]
    operations = [
        migrations.RunPython(prepare, reload_sqlite_triggers_after, elidable=False),
        migrations.AddConstraint(
            model_name="account",
            constraint=models.CheckConstraint(
                condition=models.Q(status__in=["active", "frozen"]), name="ledger_account_status_valid"
            ),
        ),
        migrations.RunPython(apply, unapply, elidable=False),
    ]
