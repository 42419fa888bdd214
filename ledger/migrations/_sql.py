"""Helpers for migrations that (re)load ledger/sql/*.sql."""

from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def reload_postgresql(apps, schema_editor):
    """Re-run ledger/sql/postgresql.sql (idempotent: CREATE OR REPLACE / DROP IF EXISTS)."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute((SQL_DIR / "postgresql.sql").read_text(), params=None)
