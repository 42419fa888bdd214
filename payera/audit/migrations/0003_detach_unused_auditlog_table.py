"""auditlog's own migrations create `auditlog_logentry` even though AUDITLOG_LOGENTRY_MODEL
swaps it for `audit.AuditLogEntry` (they do not mark the model swappable). The table stays empty,
but its foreign keys to django_content_type and auth_user make PostgreSQL refuse the TRUNCATE
of those tables that `flush` (and every transactional test) runs, because Django no longer knows
the swapped table and does not truncate it with them. Dropping those constraints of the unused
table fixes that; nothing reads or writes it. (SQLite's flush is a DELETE: no effect there.)
"""

from django.db import migrations

DROP_FKS = """
DO $$
DECLARE fk record;
BEGIN
    IF to_regclass('auditlog_logentry') IS NULL THEN
        RETURN;
    END IF;
    FOR fk IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'auditlog_logentry'::regclass AND contype = 'f'
    LOOP
        EXECUTE format('ALTER TABLE auditlog_logentry DROP CONSTRAINT %I', fk.conname);
    END LOOP;
END
$$;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_FKS, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_append_only_triggers"),
        ("auditlog", "0017_add_actor_email"),
    ]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
