"""SQLite: the database refuses an unbalanced journal (docs/decisions/ledger-sqlite-journal-seal.md).

Before, SQLite (the embedded default) left a journal's balance to the posting service and
ledger_verify: an unbalanced raw INSERT of entries committed. Now a journal is sealed when its row
is written: its entries come first, the journal row last; the row's INSERT is refused unless the
entries exist and sum to zero per currency (a void of a pending journal has none); an entry for a
journal that exists is refused; entries whose journal is never written are refused at COMMIT by a
deferred foreign key from `ledger_journal_unsealed` (a table the entry trigger writes and the
journal's INSERT empties). ledger/sql/sqlite.sql is loaded again: new triggers and the new table,
nothing existing is rewritten or re-checked (journals already written are sealed as they are).
Also: an INSERT OR REPLACE that collides with a journal or an entry is refused (SQLite deletes the
row it collides with without firing its DELETE trigger: a sealed journal could be swapped), and so
is one that collides with an account; a new account starts with an empty projection; an entry's
amount is an integer (a real or text amount would make the seal's sum a float).
PostgreSQL: nothing changes (its deferred constraint trigger checks the balance at COMMIT).
"""

from django.db import migrations

from ledger.migrations._sql import reload_sqlite_sql

SEAL_TRIGGERS = (
    "ledger_journal_unsealed_checked",
    "ledger_entry_sealed",
    "ledger_entry_unsealed",
    "ledger_journal_seal",
    "ledger_journal_unsealed_no_update",
    "ledger_journal_unsealed_no_delete",
    "ledger_journal_no_replace",
    "ledger_entry_no_replace",
    "ledger_account_no_replace",
    "ledger_account_new_empty",
    "ledger_entry_integer_amount",
)

# What 0002-0010 had in place of the seal: an entry named a journal that existed already.
UNSEALED_ENTRY_JOURNAL = """
CREATE TRIGGER ledger_entry_journal BEFORE INSERT ON ledger_entry
WHEN NOT EXISTS (SELECT 1 FROM ledger_journal WHERE id = NEW.journal_id)
BEGIN SELECT RAISE(ABORT, 'ledger: an entry must name a journal'); END;
"""


def apply(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        reload_sqlite_sql(schema_editor)


def unapply(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        cursor = schema_editor.connection.cursor()
        for name in SEAL_TRIGGERS:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
        cursor.execute("DROP TABLE IF EXISTS ledger_journal_unsealed")
        cursor.execute("DROP TRIGGER IF EXISTS ledger_entry_journal")
        cursor.execute(UNSEALED_ENTRY_JOURNAL)


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0010_definer_posting_functions")]
    operations = [migrations.RunPython(apply, unapply, elidable=False)]
