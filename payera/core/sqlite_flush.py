"""SQLite: append-only tables let Django's `flush` past their DELETE triggers, and nothing else.

SQLite has no roles, so a trigger can not tell Django's test-runner `flush` (which empties every
table with DELETE) from any other DELETE. Every Django SQLite connection gets the SQL function
`payera_flush_allowed()`, true only while `DatabaseOperations.execute_sql_flush` runs in this
thread; append-only tables' DELETE triggers say `WHEN NOT payera_flush_allowed()`. A connection
opened outside Django lacks the function, so its DELETE fails too (fails closed). PostgreSQL's
equivalent is "TRUNCATE only by a superuser". (The ledger registers the same flag under its own
name, `ledger_flush_allowed()`: ledger/db.py.)
"""

from __future__ import annotations

import functools
import threading

SQL_FUNCTION = "payera_flush_allowed"

_state = threading.local()


def flush_allowed() -> int:
    return 1 if getattr(_state, "flushing", False) else 0


def patch_flush(operations_class) -> None:
    """Wrap `execute_sql_flush` of a backend's operations class (once) to raise the flag."""
    original = operations_class.execute_sql_flush
    if getattr(original, "_payera_flush_wrapped", False):
        return

    @functools.wraps(original)
    def execute_sql_flush(self, sql_list):
        _state.flushing = True
        try:
            return original(self, sql_list)
        finally:
            _state.flushing = False

    execute_sql_flush._payera_flush_wrapped = True  # type: ignore[attr-defined]
    operations_class.execute_sql_flush = execute_sql_flush


def register_sqlite_function(sender, connection, **kwargs) -> None:
    """connection_created receiver: SQLite connections get `payera_flush_allowed()`."""
    if connection.vendor == "sqlite":
        patch_flush(type(connection.ops))
        connection.connection.create_function(SQL_FUNCTION, 0, flush_allowed, deterministic=False)
