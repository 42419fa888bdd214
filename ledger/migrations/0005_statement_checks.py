"""Entry checks once per statement, not once per row (docs/decisions/ledger-lean-single-journal.md,
"Session 6"), PostgreSQL only:
- a statement trigger with a transition table checks every new entry's currency against its account
  (in place of the composite foreign key, whose RI check ran one query per entry) and sends a journal
  to the commit-time balance check (ledger_journal_check, a deferred constraint trigger) only when it
  does not exist or does not balance at the end of the statement (in place of a deferred check per
  entry);
- the account guard also refuses a change of id (the foreign key did);
- ledger_account gets fillfactor 50: the projection UPDATEs of a posting then stay HOT (no index
  entries), and rows written from now on leave room for their next version.
SQLite keeps its per-row triggers (nothing changes there).
"""

from django.db import migrations

from ledger.migrations._sql import reload_postgresql_invariants

FILLFACTOR = "ALTER TABLE ledger_account SET (fillfactor = 50);"

UNDO = """
DROP TRIGGER IF EXISTS ledger_entry_checked ON ledger_entry;
DROP FUNCTION IF EXISTS ledger_check_entries();
DROP TABLE IF EXISTS ledger_journal_check;
CREATE OR REPLACE FUNCTION ledger_check_journal_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    has_journal boolean;
    bad text;
BEGIN
    SELECT EXISTS (SELECT 1 FROM ledger_journal WHERE id = NEW.journal_id),
           (SELECT currency FROM ledger_entry WHERE journal_id = NEW.journal_id
             GROUP BY currency HAVING sum(amount) <> 0 LIMIT 1)
      INTO has_journal, bad;
    IF NOT has_journal THEN
        RAISE EXCEPTION 'ledger: entry % names no journal (%)', NEW.id, NEW.journal_id
            USING ERRCODE = '23503', CONSTRAINT = 'ledger_entry_journal_exists';
    END IF;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: journal % does not balance in %', NEW.journal_id, bad
            USING ERRCODE = '23514', CONSTRAINT = 'ledger_journal_balanced';
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS ledger_entry_balanced ON ledger_entry;
CREATE CONSTRAINT TRIGGER ledger_entry_balanced AFTER INSERT ON ledger_entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_journal_balanced();
ALTER TABLE ledger_entry DROP CONSTRAINT IF EXISTS ledger_entry_account_currency_fk;
ALTER TABLE ledger_entry ADD CONSTRAINT ledger_entry_account_currency_fk
    FOREIGN KEY (account_id, currency) REFERENCES ledger_account (id, currency);
ALTER TABLE ledger_account RESET (fillfactor);
"""


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        reload_postgresql_invariants(apps, schema_editor)
        schema_editor.execute(FILLFACTOR, params=None)


def unapply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNDO, params=None)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0004_lean_single_journal")]
    operations = [migrations.RunPython(apply, unapply, elidable=False)]
