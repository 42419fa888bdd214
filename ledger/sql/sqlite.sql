-- Ledger invariants, SQLite (the embedded default). Loaded by migration 0002, again by 0008 (after
-- its table rebuild) and 0011 (the journal seal); idempotent (DROP IF EXISTS / IF NOT EXISTS).
-- Differences from PostgreSQL (docs/ledger.md): SQLite has no deferred triggers, so a journal is
-- sealed instead (docs/decisions/ledger-sqlite-journal-seal.md): its entries are written first,
-- the journal row last, and the row's INSERT checks that they exist and balance; there is no
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
-- An amount is an integer (minor units): the column has only INTEGER affinity, and a real or text
-- value would make the seal's sum() a float (2^53 + 1 - 2^53 + 0.5 - 0.5 sums to 0) or skip it.
DROP TRIGGER IF EXISTS ledger_entry_integer_amount;
CREATE TRIGGER ledger_entry_integer_amount BEFORE INSERT ON ledger_entry
WHEN typeof(NEW.amount) IS NOT 'integer'
BEGIN SELECT RAISE(ABORT, 'ledger: an entry''s amount is an integer number of minor units'); END;
DROP TRIGGER IF EXISTS ledger_entry_currency;
CREATE TRIGGER ledger_entry_currency BEFORE INSERT ON ledger_entry
WHEN NEW.currency IS NOT (SELECT currency FROM ledger_account WHERE id = NEW.account_id)
BEGIN SELECT RAISE(ABORT, 'ledger: an entry''s currency must be its account''s'); END;
-- The journal seal (migration 0011). A journal's entries are inserted before the journal row; the
-- row seals the journal: its INSERT is refused unless the journal's entries exist and sum to zero
-- per currency (a void of a pending journal, which posts nothing, has none), and no entry can be
-- added to a journal that exists. Entries whose journal is never written are refused at COMMIT:
-- each journal with entries but no row yet has a row in ledger_journal_unsealed, whose foreign key
-- to the journal is deferred (SQLite's one commit-time check); the journal's INSERT deletes it.
-- Deferred foreign keys need PRAGMA foreign_keys=ON (Django turns it on for its connections): on a
-- connection without it that marker row is refused, and so the entry that writes it (fails closed,
-- as ledger_flush_allowed()). Checked once per journal, at its first entry: a later entry finds the
-- marker only if an INSERT checked that way wrote it.
DROP TRIGGER IF EXISTS ledger_entry_journal;
CREATE TABLE IF NOT EXISTS ledger_journal_unsealed (
    journal_id integer NOT NULL PRIMARY KEY REFERENCES ledger_journal (id) DEFERRABLE INITIALLY DEFERRED
);
DROP TRIGGER IF EXISTS ledger_journal_unsealed_checked;
CREATE TRIGGER ledger_journal_unsealed_checked BEFORE INSERT ON ledger_journal_unsealed
BEGIN
    SELECT CASE
        WHEN (SELECT foreign_keys FROM pragma_foreign_keys) IS NOT 1
        THEN RAISE(ABORT, 'ledger: entries are written only with PRAGMA foreign_keys=ON (the journal seal is checked at COMMIT by a deferred foreign key)')
        -- (a marker of a written journal would outlive its transaction and block Django's flush)
        WHEN EXISTS (SELECT 1 FROM ledger_journal WHERE id = NEW.journal_id)
        THEN RAISE(ABORT, 'ledger: journal is sealed: a written journal has no marker')
    END;
END;
DROP TRIGGER IF EXISTS ledger_entry_sealed;
CREATE TRIGGER ledger_entry_sealed BEFORE INSERT ON ledger_entry
WHEN EXISTS (SELECT 1 FROM ledger_journal WHERE id = NEW.journal_id)
BEGIN SELECT RAISE(ABORT, 'ledger: journal is sealed: an entry cannot be added to a journal that is written'); END;
DROP TRIGGER IF EXISTS ledger_entry_unsealed;
CREATE TRIGGER ledger_entry_unsealed AFTER INSERT ON ledger_entry
WHEN NOT EXISTS (SELECT 1 FROM ledger_journal_unsealed WHERE journal_id = NEW.journal_id)
BEGIN INSERT INTO ledger_journal_unsealed (journal_id) VALUES (NEW.journal_id); END;
DROP TRIGGER IF EXISTS ledger_journal_seal;
CREATE TRIGGER ledger_journal_seal AFTER INSERT ON ledger_journal
BEGIN
    SELECT CASE
        WHEN NEW.phase = 3 THEN CASE
            WHEN NEW.pending_id IS NULL
            THEN RAISE(ABORT, 'ledger: a journal without entries must be the void of a pending journal')
            WHEN EXISTS (SELECT 1 FROM ledger_entry WHERE journal_id = NEW.id)
            THEN RAISE(ABORT, 'ledger: a void posts no entries')
        END
        WHEN NOT EXISTS (SELECT 1 FROM ledger_entry WHERE journal_id = NEW.id)
        THEN RAISE(ABORT, 'ledger: a journal needs entries, written before the journal row (the seal)')
        WHEN EXISTS (SELECT 1 FROM ledger_entry WHERE journal_id = NEW.id GROUP BY currency HAVING sum(amount) <> 0)
        THEN RAISE(ABORT, 'ledger: journal does not balance: its entries must sum to zero per currency')
    END;
    DELETE FROM ledger_journal_unsealed WHERE journal_id = NEW.id;
END;
-- INSERT OR REPLACE deletes the row it collides with, and SQLite fires no DELETE trigger for that
-- (unless PRAGMA recursive_triggers): a sealed journal or its entries could be swapped for others.
-- An INSERT that collides with a journal or an entry is refused whatever its conflict clause.
DROP TRIGGER IF EXISTS ledger_journal_no_replace;
CREATE TRIGGER ledger_journal_no_replace BEFORE INSERT ON ledger_journal
WHEN EXISTS (SELECT 1 FROM ledger_journal WHERE id = NEW.id)
  OR EXISTS (SELECT 1 FROM ledger_journal WHERE reference = NEW.reference)
  OR (NEW.pending_id IS NOT NULL AND EXISTS (SELECT 1 FROM ledger_journal WHERE pending_id = NEW.pending_id))
  OR (NEW.reverses_id IS NOT NULL AND EXISTS (SELECT 1 FROM ledger_journal WHERE reverses_id = NEW.reverses_id))
BEGIN SELECT RAISE(ABORT, 'ledger: a journal is never replaced: its id, reference, resolution or reversal is taken'); END;
DROP TRIGGER IF EXISTS ledger_entry_no_replace;
CREATE TRIGGER ledger_entry_no_replace BEFORE INSERT ON ledger_entry
WHEN EXISTS (SELECT 1 FROM ledger_entry WHERE account_id = NEW.account_id AND version = NEW.version)
  OR EXISTS (SELECT 1 FROM ledger_entry WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'ledger: an entry is never replaced: its id or (account, version) is taken'); END;
-- The same for accounts (an account replaced would come back with another currency, type or limit
-- and an empty projection under its id), and a new account starts with an empty projection
-- (PostgreSQL: ledger_account_new_empty, migration 0010): its balance comes from entries only.
DROP TRIGGER IF EXISTS ledger_account_no_replace;
CREATE TRIGGER ledger_account_no_replace BEFORE INSERT ON ledger_account
WHEN EXISTS (SELECT 1 FROM ledger_account WHERE id = NEW.id)
  OR (NEW.parent_id IS NULL AND EXISTS (SELECT 1 FROM ledger_account WHERE parent_id IS NULL
        AND owner = NEW.owner AND code = NEW.code AND currency = NEW.currency))
  OR (NEW.parent_id IS NOT NULL AND EXISTS (SELECT 1 FROM ledger_account WHERE parent_id = NEW.parent_id
        AND shard = NEW.shard))
BEGIN SELECT RAISE(ABORT, 'ledger: an account is never replaced: its id or key is taken'); END;
DROP TRIGGER IF EXISTS ledger_account_new_empty;
CREATE TRIGGER ledger_account_new_empty BEFORE INSERT ON ledger_account
WHEN NEW.balance <> 0 OR NEW.debits_pending <> 0 OR NEW.credits_pending <> 0 OR NEW.version <> 0
BEGIN SELECT RAISE(ABORT, 'ledger: a new account starts with balance, pending amounts and version 0'); END;
DROP TRIGGER IF EXISTS ledger_journal_unsealed_no_update;
CREATE TRIGGER ledger_journal_unsealed_no_update BEFORE UPDATE ON ledger_journal_unsealed
BEGIN SELECT RAISE(ABORT, 'ledger: UPDATE of ledger_journal_unsealed is not allowed'); END;
DROP TRIGGER IF EXISTS ledger_journal_unsealed_no_delete;
CREATE TRIGGER ledger_journal_unsealed_no_delete BEFORE DELETE ON ledger_journal_unsealed
WHEN NOT EXISTS (SELECT 1 FROM ledger_journal WHERE id = OLD.journal_id)
BEGIN SELECT RAISE(ABORT, 'ledger: entries of an unwritten journal stay unsealed until the journal row is written'); END;
-- The id too (migration 0013, review 14c; PostgreSQL's guard since its 0005): entries name their
-- account by id with no foreign key, so a changed id would hand an account's entries to another.
DROP TRIGGER IF EXISTS ledger_account_identity;
CREATE TRIGGER ledger_account_identity BEFORE UPDATE OF id, owner, code, currency, type, hot, parent_id, shard
ON ledger_account
BEGIN SELECT RAISE(ABORT, 'ledger: an account''s identity never changes'); END;
DROP TRIGGER IF EXISTS ledger_account_no_delete;
CREATE TRIGGER ledger_account_no_delete BEFORE DELETE ON ledger_account
WHEN NOT ledger_flush_allowed()
BEGIN SELECT RAISE(ABORT, 'ledger: accounts are never deleted'); END;
