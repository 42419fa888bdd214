"""Helpers for migrations that (re)load ledger/sql/*.sql."""

import sqlite3
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
FUNCTIONS_MARKER = "-- 4. The posting function"


def reload_postgresql_functions(apps, schema_editor):
    """Re-run the posting functions of ledger/sql/postgresql.sql (section 4 on: CREATE OR REPLACE,
    DROP IF EXISTS). Not the constraints and triggers above it: re-adding the composite foreign key
    would re-validate every entry of a production ledger."""
    if schema_editor.connection.vendor == "postgresql":
        sql = (SQL_DIR / "postgresql.sql").read_text()
        schema_editor.execute(sql[sql.index(FUNCTIONS_MARKER) :], params=None)


INVARIANTS_MARKER = "-- 1. and 2."


def reload_postgresql_invariants(apps, schema_editor):
    """Re-run sections 1-3 of ledger/sql/postgresql.sql (the invariants: idempotent DROP IF EXISTS /
    CREATE OR REPLACE / CREATE TABLE IF NOT EXISTS; nothing in them re-validates existing rows)."""
    if schema_editor.connection.vendor == "postgresql":
        sql = (SQL_DIR / "postgresql.sql").read_text()
        schema_editor.execute(sql[sql.index(INVARIANTS_MARKER) : sql.index(FUNCTIONS_MARKER)], params=None)


def reload_sqlite_sql(schema_editor):
    """ledger/sql/sqlite.sql statement by statement (executescript would COMMIT the migration's
    transaction first). Idempotent: DROP IF EXISTS / IF NOT EXISTS."""
    cursor, statement = schema_editor.connection.cursor(), ""
    for line in (SQL_DIR / "sqlite.sql").read_text().splitlines():
        if line.startswith("--"):
            continue
        statement += line + "\n"
        if sqlite3.complete_statement(statement):
            cursor.execute(statement)
            statement = ""
