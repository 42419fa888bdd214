"""The lean single-journal path (docs/decisions/ledger-lean-single-journal.md), PostgreSQL only:
- reload the posting functions (adds ledger_post_one());
- the account guard trigger fires only for an UPDATE that names an identity column;
- drop Django's `varchar_pattern_ops` copy of the journal reference index (only LIKE queries use
  it, and none is on a hot path; the unique index stays): one index insert less per journal.
SQLite has nothing to change (its identity trigger is already `BEFORE UPDATE OF ...`).
"""

from django.db import migrations

from ledger.migrations._sql import reload_postgresql_functions

GUARD = """
DROP TRIGGER IF EXISTS ledger_account_guard ON ledger_account;
CREATE TRIGGER ledger_account_guard BEFORE UPDATE OF owner, code, currency, type, hot, parent_id, shard
    ON ledger_account FOR EACH ROW
    WHEN ((NEW.owner, NEW.code, NEW.currency, NEW.type, NEW.hot, NEW.parent_id, NEW.shard)
          IS DISTINCT FROM (OLD.owner, OLD.code, OLD.currency, OLD.type, OLD.hot, OLD.parent_id, OLD.shard))
    EXECUTE FUNCTION ledger_account_guard();
"""

DROP_LIKE = """
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
              WHERE x.indrelid = 'ledger_journal'::regclass AND i.relname LIKE 'ledger_journal_reference%_like'
    LOOP
        EXECUTE format('DROP INDEX %I', r.relname);
    END LOOP;
END $$;
"""


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        reload_postgresql_functions(apps, schema_editor)
        schema_editor.execute(GUARD, params=None)
        schema_editor.execute(DROP_LIKE, params=None)


def unapply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS ledger_post_one CASCADE;"
            "CREATE INDEX IF NOT EXISTS ledger_journal_reference_3e377ced_like"
            " ON ledger_journal (reference varchar_pattern_ops);",
            params=None,
        )


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0003_set_based_batches")]
    operations = [migrations.RunPython(apply, unapply, elidable=False)]
