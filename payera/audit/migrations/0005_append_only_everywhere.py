"""Audit records are append-only down to the database on SQLite too, and against TRUNCATE.

Until now (0002) only PostgreSQL refused UPDATE and DELETE of audit records, by row triggers, and
nothing refused TRUNCATE; on the embedded SQLite default the model and queryset guards stood
alone, because Django's flush there is a DELETE that a trigger would break. The flush has its own
flag now (`payera_flush_allowed()`, payera/core/sqlite_flush.py, as the ledger's):

- PostgreSQL: the row triggers stay; a statement trigger refuses TRUNCATE, except by a superuser
  (the test runner's flush; a superuser can disable triggers anyway; the runtime role has no
  TRUNCATE, and only SELECT and INSERT here: AuditConfig.db_runtime_grants).
- SQLite: UPDATE is refused; DELETE too, except inside Django's flush. A later migration that makes
  SQLite rebuild one of these tables drops its triggers with the old table: it must create them
  again (tests/audit/test_immutable.py checks them on SQLite through scripts/run_embedded_scenarios.py).
"""

from django.db import migrations

TABLES = ("audit_auditlogentry", "audit_securityevent")

POSTGRESQL_FORWARD = """
CREATE OR REPLACE FUNCTION payera_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit records are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
""" + "".join(
    f"""
DROP TRIGGER IF EXISTS {table}_no_truncate ON {table};
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION payera_audit_refuse_change();
"""
    for table in TABLES
)

POSTGRESQL_BACKWARD = "".join(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table};\n" for table in TABLES)

SQLITE_FORWARD = [
    statement
    for table in TABLES
    for statement in (
        f"DROP TRIGGER IF EXISTS {table}_no_update",
        f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: UPDATE on {table} refused'); END""",
        f"DROP TRIGGER IF EXISTS {table}_no_delete",
        f"""CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
WHEN NOT payera_flush_allowed()
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: DELETE on {table} refused'); END""",
    )
]

SQLITE_BACKWARD = [f"DROP TRIGGER IF EXISTS {table}_{op}" for table in TABLES for op in ("no_update", "no_delete")]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_FORWARD, params=None)
    elif vendor == "sqlite":
        with schema_editor.connection.cursor() as cursor:
            for statement in SQLITE_FORWARD:
                cursor.execute(statement)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_BACKWARD, params=None)
    elif vendor == "sqlite":
        with schema_editor.connection.cursor() as cursor:
            for statement in SQLITE_BACKWARD:
                cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_drop_unused_indexes")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
