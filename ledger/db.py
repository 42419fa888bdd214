"""SQLite support for the append-only triggers (PostgreSQL needs none of this).

SQLite has no roles, so its triggers cannot tell Django's test-runner `flush` (which empties
every table with DELETE) from any other DELETE. Every Django SQLite connection gets the SQL
function `ledger_flush_allowed()`, true only while `DatabaseOperations.execute_sql_flush` runs
in this thread; the DELETE triggers call it. A connection opened outside Django lacks the
function, so its DELETE fails too (fails closed). PostgreSQL's equivalent is "TRUNCATE only by
a superuser". The flag is the platform's (payera/core/sqlite_flush.py, `payera_flush_allowed()`
for the platform's append-only tables); the ledger's triggers name it under their own name.
"""

from __future__ import annotations

from payera.core.sqlite_flush import flush_allowed, patch_flush


def register_sqlite_function(sender, connection, **kwargs) -> None:
    """connection_created receiver: SQLite connections get the function (and flush is wrapped)."""
    if connection.vendor == "sqlite":
        patch_flush(type(connection.ops))
        connection.connection.create_function("ledger_flush_allowed", 0, flush_allowed, deterministic=False)
