"""Fewer per-statement costs on a single posting (docs/decisions/ledger-lean-single-journal.md,
"Session 7"), PostgreSQL only:
- an entry's amount <> 0 and version >= 1 are checked by the entry statement trigger
  (ledger_entry_checked) instead of two CHECK constraints;
- an account's ISO currency and "a hot account has no limit" by a row trigger on INSERT and on an
  UPDATE naming those columns (ledger_account_checked) instead of two CHECK constraints, which every
  projection UPDATE rebuilt and evaluated;
- ledger_post_one(): no sequential scans (a small ledger_account made the lock a scan of the whole
  table), one array unnested per statement instead of five.
The model keeps the four CheckConstraints (SQLite enforces them, and Django's validation): Django's
state does not change, only PostgreSQL's schema. SQLite has nothing to change.
"""

from django.db import migrations

from ledger.migrations._sql import reload_postgresql_functions, reload_postgresql_invariants

UNDO = """
DROP TRIGGER IF EXISTS ledger_account_checked ON ledger_account;
DROP FUNCTION IF EXISTS ledger_account_refuse();
ALTER TABLE ledger_account ADD CONSTRAINT ledger_account_currency_iso CHECK (currency::text ~ '^[A-Z]{3}$');
ALTER TABLE ledger_account ADD CONSTRAINT ledger_account_hot_unlimited
    CHECK (NOT (hot AND (debits_must_not_exceed_credits OR credits_must_not_exceed_debits)));
ALTER TABLE ledger_entry ADD CONSTRAINT ledger_entry_amount_nonzero CHECK (NOT (amount = 0));
ALTER TABLE ledger_entry ADD CONSTRAINT ledger_entry_version_gte_1 CHECK (version >= 1);
"""


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        reload_postgresql_invariants(apps, schema_editor)
        reload_postgresql_functions(apps, schema_editor)


def unapply(apps, schema_editor):
    # (the trigger function keeps the two entry checks, which are then also CHECK constraints again)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNDO, params=None)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0005_statement_checks")]
    operations = [migrations.RunPython(apply, unapply, elidable=False)]
