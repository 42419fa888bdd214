"""SQLite support for the append-only triggers (PostgreSQL needs none of this).

SQLite has no roles, so its triggers cannot tell Django's test-runner `flush` (which empties
every table with DELETE) from any other DELETE. Every Django SQLite connection gets the SQL
function `ledger_flush_allowed()`, true only while `DatabaseOperations.execute_sql_flush` runs
in this thread; the DELETE triggers call it. A connection opened outside Django lacks the
function, so its DELETE fails too (fails closed). PostgreSQL's equivalent is "TRUNCATE only by
a superuser". The flag is the platform's (payera/core/sqlite_flush.py, `payera_flush_allowed()`
for the platform's append-only tables); the ledger's triggers name it under their own name.

`ledger_verify` gets the aggregate `ledger_sum(x)` (session 18): SQLite's sum() raises "integer
overflow" on a sum past the bigint range, where PostgreSQL's sum of bigints is an exact numeric.
ledger_sum is exact within the range and answers a sum past it as +-Infinity: unequal to every
balance (a mismatch), of the sum's sign (limit checks), never an error. `ledger_totals` gets
`ledger_sum_text(x)` (review r19e, session 19): the exact sum as text (int() of it is exact past the
range too), as PostgreSQL's numeric.
"""

from __future__ import annotations

import math

from payera.core.sqlite_flush import flush_allowed, patch_flush


def register_sqlite_function(sender, connection, **kwargs) -> None:
    """connection_created receiver: SQLite connections get the function (and flush is wrapped)."""
    if connection.vendor == "sqlite":
        patch_flush(type(connection.ops))
        connection.connection.create_function("ledger_flush_allowed", 0, flush_allowed, deterministic=False)
        connection.connection.create_aggregate("ledger_sum", 1, LedgerSum)
        connection.connection.create_aggregate("ledger_sum_text", 1, LedgerSumText)


class LedgerSum:
    """sum() of integers, exact within the bigint range, +-Infinity past it; NULL over no value."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total: int | None = None

    def step(self, value) -> None:
        if value is not None:
            self.total = (self.total or 0) + value

    def finalize(self) -> int | float | None:
        if self.total is None or -(2**63) <= self.total < 2**63:
            return self.total
        return math.inf if self.total > 0 else -math.inf


class LedgerSumText(LedgerSum):
    """sum() of integers, exact at any size, as text (SQLite holds no integer past 64 bits)."""

    __slots__ = ()

    def finalize(self) -> str | None:  # type: ignore[override]
        return None if self.total is None else str(self.total)
