"""Database-enforced invariants (triggers) and the PostgreSQL posting function.

Vendor-checked: ledger/sql/postgresql.sql on PostgreSQL, ledger/sql/sqlite.sql on SQLite.
"""

from pathlib import Path

from django.db import migrations

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def apply(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute((SQL_DIR / "postgresql.sql").read_text(), params=None)
    elif vendor == "sqlite":
        schema_editor.connection.cursor().executescript((SQL_DIR / "sqlite.sql").read_text())
    else:
        raise RuntimeError(f"ledger: unsupported database vendor {vendor!r}")


def unapply(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS ledger_post_batch_atomic CASCADE;"
            "DROP FUNCTION IF EXISTS ledger_post_batch CASCADE;"
            "DROP TRIGGER IF EXISTS ledger_entry_balanced ON ledger_entry;"
            "DROP TRIGGER IF EXISTS ledger_journal_append_only ON ledger_journal;"
            "DROP TRIGGER IF EXISTS ledger_journal_no_truncate ON ledger_journal;"
            "DROP TRIGGER IF EXISTS ledger_entry_append_only ON ledger_entry;"
            "DROP TRIGGER IF EXISTS ledger_entry_no_truncate ON ledger_entry;"
            "DROP TRIGGER IF EXISTS ledger_account_no_truncate ON ledger_account;"
            "DROP TRIGGER IF EXISTS ledger_account_guard ON ledger_account;"
            "DROP TRIGGER IF EXISTS ledger_account_no_delete ON ledger_account;"
            "ALTER TABLE ledger_entry DROP CONSTRAINT IF EXISTS ledger_entry_account_currency_fk;",
            params=None,
        )
    elif vendor == "sqlite":
        cursor = schema_editor.connection.cursor()
        for name in (
            "ledger_journal_no_update",
            "ledger_journal_no_delete",
            "ledger_entry_no_update",
            "ledger_entry_no_delete",
            "ledger_entry_currency",
            "ledger_entry_journal",
            "ledger_account_identity",
            "ledger_account_no_delete",
        ):
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ledger", "0001_initial")]
    operations = [migrations.RunPython(apply, unapply, elidable=False)]
