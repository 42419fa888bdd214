"""The database refuses UPDATE, DELETE and TRUNCATE of staff actions, whoever is connected.

`StaffAction` (who did what from the back office, and why) was append-only only in Python
(`AppendOnlyMixin`, `AppendOnlyQuerySet`): a raw UPDATE or DELETE, or a queryset's
`_raw_delete`, rewrote or removed it. As the audit trail's and the ledger's tables:

- PostgreSQL: row triggers refuse UPDATE and DELETE; a statement trigger refuses TRUNCATE,
  except by a superuser (the test runner's flush; a superuser can disable triggers anyway; the
  runtime role has neither TRUNCATE nor UPDATE/DELETE here: BackofficeConfig.db_runtime_grants).
- SQLite (the embedded default): UPDATE is refused; DELETE too, except inside Django's flush
  (`payera_flush_allowed()`, payera/core/sqlite_flush.py; a connection outside Django lacks the
  function and fails closed). SQLite has no TRUNCATE (its `DELETE FROM t` is the DELETE trigger's).
  A later migration that makes SQLite rebuild this table (most AlterField) drops these triggers
  with the old table: it must create them again (tests/backoffice/test_staff_action_immutable.py
  checks them on a freshly migrated SQLite database).
"""

from django.db import migrations

TABLE = "backoffice_staffaction"

POSTGRESQL_FORWARD = f"""
CREATE OR REPLACE FUNCTION payera_backoffice_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'staff actions are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE};
CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION payera_backoffice_refuse_change();
DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE};
CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION payera_backoffice_refuse_change();
"""  # noqa: S608 - a fixed table name, no input

POSTGRESQL_BACKWARD = f"""
DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE};
DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE};
DROP FUNCTION IF EXISTS payera_backoffice_refuse_change();
"""

SQLITE_FORWARD = (
    f"DROP TRIGGER IF EXISTS {TABLE}_no_update",
    f"""CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE}
BEGIN SELECT RAISE(ABORT, 'staff actions are append-only: UPDATE on {TABLE} refused'); END""",
    f"DROP TRIGGER IF EXISTS {TABLE}_no_delete",
    f"""CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE}
WHEN NOT payera_flush_allowed()
BEGIN SELECT RAISE(ABORT, 'staff actions are append-only: DELETE on {TABLE} refused'); END""",
)

SQLITE_BACKWARD = (f"DROP TRIGGER IF EXISTS {TABLE}_no_update", f"DROP TRIGGER IF EXISTS {TABLE}_no_delete")


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_FORWARD, params=None)
    elif vendor == "sqlite":
        with schema_editor.connection.cursor() as cursor:
            for statement in SQLITE_FORWARD:
                cursor.execute(statement)
    else:
        raise RuntimeError(f"backoffice: unsupported database vendor {vendor!r}")


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_BACKWARD, params=None)
    elif vendor == "sqlite":
        with schema_editor.connection.cursor() as cursor:
            for statement in SQLITE_BACKWARD:
                cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("backoffice", "0001_initial")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
