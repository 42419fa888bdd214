"""The database refuses UPDATE and DELETE of audit records, whoever is connected (PostgreSQL).

On the embedded SQLite default the model and queryset guards stand alone: SQLite's flush is a
DELETE, which a trigger would break. TRUNCATE is not covered by row triggers: the production
database role of the application must not own these tables (docs/decisions/audit-trail.md).
"""

from django.db import migrations

TABLES = ("audit_auditlogentry", "audit_securityevent")

FORWARD = """
CREATE OR REPLACE FUNCTION payera_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
""" + "".join(
    f"""
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION payera_audit_refuse_change();
"""
    for table in TABLES
)

BACKWARD = "".join(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};\n" for table in TABLES) + (
    "DROP FUNCTION IF EXISTS payera_audit_refuse_change();"
)


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
