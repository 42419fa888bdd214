"""Batched data backfills: fill a column of a large table batch by batch, each batch its own short
transaction, never the whole table in the migration's one (docs/runbooks/backfill.md).

A migration's backfill that is one UPDATE holds every row it touches locked until the migration
commits (payments 0023 once held every refund's row for ~26 s per 400k refunds): payments waiting
on a refund's row waited that long. Here a backfill is one UPDATE per batch of keys, in key order
(keyset: `key > last`, no OFFSET), each committed before the next starts, so a row is locked for
one batch's time only.

`pending` (an SQL condition on the row) says which rows still need filling, and must turn false for
a row once it is filled (e.g. `succeeded_at IS NULL AND ...`). That makes a backfill idempotent (a
rerun finds no row pending and updates nothing) and resumable (a run killed between batches kept
the batches it committed; run again, it does the rest). The UPDATE checks `pending` again, so a row
filled meanwhile (by the new code, or by another run) is left as it is.

The caller must not hold a transaction: in a migration, `atomic = False` (and its other
operations in migrations of their own, so a rerun after an interruption does not trip over a
column it already added).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections, transaction

logger = logging.getLogger("payera.backfill")


@dataclass(frozen=True)
class Backfill:
    """`UPDATE table SET <set> WHERE <pending>`, run batch by batch over `key`. `set` and `pending`
    are SQL (constants of the migration, never input); they may name the table's columns and, in
    correlated subqueries, `table.column`."""

    table: str
    set: str
    pending: str
    key: str = "id"


@dataclass(frozen=True)
class BackfillResult:
    batches: int
    rows: int


def run_backfill(
    backfill: Backfill, *, batch_size: int, using: str = DEFAULT_DB_ALIAS, pause: float = 0.0
) -> BackfillResult:
    """Run `backfill` in batches of at most `batch_size` pending rows, each batch committed on its
    own; `pause` seconds between batches leave room to the rest of the load."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    connection = connections[using]
    qn = connection.ops.quote_name
    table, key = qn(backfill.table), qn(backfill.key)
    pending = f"({backfill.pending})"
    # table and key quoted; `set` and `pending` are the migration's SQL constants; values bound
    first = f"SELECT {key} FROM {table} WHERE {pending} ORDER BY {key} LIMIT %s"  # noqa: S608
    after = f"SELECT {key} FROM {table} WHERE {key} > %s AND {pending} ORDER BY {key} LIMIT %s"  # noqa: S608
    update = f"UPDATE {table} SET {backfill.set} WHERE {key} >= %s AND {key} <= %s AND {pending}"  # noqa: S608
    last, batches, rows = None, 0, 0
    while True:
        with connection.cursor() as cursor:
            if last is None:
                cursor.execute(first, [batch_size])
            else:
                cursor.execute(after, [last, batch_size])
            keys = [row[0] for row in cursor.fetchall()]
        if not keys:
            break
        # durable: the batch commits here, not in a caller's transaction (which would hold it all)
        with transaction.atomic(using=using, durable=True), connection.cursor() as cursor:
            cursor.execute(update, [keys[0], keys[-1]])
            rows += max(cursor.rowcount, 0)
        batches, last = batches + 1, keys[-1]
        logger.info(
            "backfill %s: batch %d up to %s=%s, %d rows so far", backfill.table, batches, backfill.key, last, rows
        )
        if pause:
            time.sleep(pause)
    logger.info("backfill %s done: %d rows in %d batches", backfill.table, rows, batches)
    return BackfillResult(batches=batches, rows=rows)
