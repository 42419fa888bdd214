-- Ledger invariants, SQLite (the embedded default). Loaded by migration 0002.
-- Differences from PostgreSQL (docs/ledger.md): SQLite has no deferred triggers, so a journal's
-- balance is checked by the posting service (and ledger_verify), not at commit; there is no
-- TRUNCATE to refuse. Writers are serialized by SQLite itself (IMMEDIATE transactions).
-- DELETE is let through only for Django's flush (ledger_flush_allowed(), ledger/db.py).
DROP TRIGGER IF EXISTS ledger_journal_no_update;
CREATE TRIGGER ledger_journal_no_update BEFORE UPDATE ON ledger_journal
BEGIN SELECT RAISE(ABORT, 'ledger: UPDATE of ledger_journal is not allowed: the ledger is append-only'); END;
DROP TRIGGER IF EXISTS ledger_journal_no_delete;
CREATE TRIGGER ledger_journal_no_delete BEFORE DELETE ON ledger_journal
WHEN NOT ledger_flush_allowed()
BEGIN SELECT RAISE(ABORT, 'ledger: DELETE of ledger_journal is not allowed: the ledger is append-only'); END;
DROP TRIGGER IF EXISTS ledger_entry_no_update;
CREATE TRIGGER ledger_entry_no_update BEFORE UPDATE ON ledger_entry
BEGIN SELECT RAISE(ABORT, 'ledger: UPDATE of ledger_entry is not allowed: the ledger is append-only'); END;
DROP TRIGGER IF EXISTS ledger_entry_no_delete;
CREATE TRIGGER ledger_entry_no_delete BEFORE DELETE ON ledger_entry
WHEN NOT ledger_flush_allowed()
BEGIN SELECT RAISE(ABORT, 'ledger: DELETE of ledger_entry is not allowed: the ledger is append-only'); END;
DROP TRIGGER IF EXISTS ledger_entry_currency;
CREATE TRIGGER ledger_entry_currency BEFORE INSERT ON ledger_entry
WHEN NEW.currency IS NOT (SELECT currency FROM ledger_account WHERE id = NEW.account_id)
BEGIN SELECT RAISE(ABORT, 'ledger: an entry''s currency must be its account''s'); END;
DROP TRIGGER IF EXISTS ledger_entry_journal;
CREATE TRIGGER ledger_entry_journal BEFORE INSERT ON ledger_entry
WHEN NOT EXISTS (SELECT 1 FROM ledger_journal WHERE id = NEW.journal_id)
BEGIN SELECT RAISE(ABORT, 'ledger: an entry must name a journal'); END;
DROP TRIGGER IF EXISTS ledger_account_identity;
CREATE TRIGGER ledger_account_identity BEFORE UPDATE OF owner, code, currency, type, hot, parent_id, shard
ON ledger_account
BEGIN SELECT RAISE(ABORT, 'ledger: an account''s identity never changes'); END;
DROP TRIGGER IF EXISTS ledger_account_no_delete;
CREATE TRIGGER ledger_account_no_delete BEFORE DELETE ON ledger_account
WHEN NOT ledger_flush_allowed()
BEGIN SELECT RAISE(ABORT, 'ledger: accounts are never deleted'); END;
