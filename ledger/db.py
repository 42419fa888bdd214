"""SQLite support for the append-only triggers (PostgreSQL needs none of this).

SQLite has no roles, so its triggers cannot tell Django's test-runner `flush` (which empties
every table with DELETE) from any other DELETE. Every Django SQLite connection gets the SQL
function `ledger_flush_allowed()`, true only while `DatabaseOperations.execute_sql_flush` runs
in this thread; the DELETE triggers call it. A connection opened outside Django lacks the
function, so its DELETE fails too (fails closed). PostgreSQL's equivalent is "TRUNCATE only by
a superuser".
"""

from __future__ import annotations

import functools
import threading

_state = threading.local()


def flush_allowed() -> int:
    return 1 if getattr(_state, "flushing", False) else 0


def register_sqlite_function(sender, connection, **kwargs) -> None:
    """connection_created receiver: SQLite connections get the function (and flush is wrapped)."""
    if connection.vendor == "sqlite":
        _patch_flush(type(connection.ops))
        connection.connection.create_function("ledger_flush_allowed", 0, flush_allowed, deterministic=False)


def _patch_flush(operations_class) -> None:
    original = operations_class.execute_sql_flush
    if getattr(original, "_ledger_wrapped", False):
        return

    @functools.wraps(original)
    def execute_sql_flush(self, sql_list):
        _state.flushing = True
        try:
            return original(self, sql_list)
        finally:
            _state.flushing = False

    execute_sql_flush._ledger_wrapped = True  # type: ignore[attr-defined]
    operations_class.execute_sql_flush = execute_sql_flush
