"""The commit horizon of rows listed newest first by a stamp taken inside their transaction.

A row stamped (`created_at`) inside a transaction becomes visible when that transaction commits,
possibly much later; a list newest first by the stamp would show it *below* rows already listed,
where a reader that walks down to the newest row it knows never looks (docs/ledger.md "Known
limits", docs/decisions/commit-horizon.md). Two helpers make such a list safe:

- `stamp_after_xid()` (or `STAMP_AFTER_XID_PG` inside an INSERT): the stamp to give a row, read
  from the database's clock after the writing transaction holds a transaction id;
- `committed_before()`: an instant before which every row so stamped is committed (or rolled back):
  a first page lists only rows stamped before it, so a row that commits later shows above.

Used by the ledger (journals stamp `clock_timestamp()` after their account locks, which take the
transaction id), by the events outbox (`Event.created_at`) and, through `CommitStampField`, by the
other lists a merchant polls: payments, refunds, disputes, customers, payouts, bookings,
subscriptions, payment methods and webhook endpoints (their `created_at`).
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection, models, transaction
from django.utils import timezone

# The start of the oldest transaction of this database that holds a transaction id, other than
# ours; the statement's start when there is none. pg_stat_activity is read once per transaction and
# kept: cleared first, so a caller's transaction sees the sessions as they are now.
_COMMITTED_BEFORE_PG = (
    "SELECT least(statement_timestamp(), min(xact_start)) FROM pg_stat_activity"
    " WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
)

# The clock, read after this transaction holds a transaction id (taken here if it has none yet):
# a CASE evaluates its condition before its result, and neither is folded (both are volatile).
# An expression: a writer puts it in its INSERT (no round trip of its own) and reads it back
# with RETURNING.
STAMP_AFTER_XID_PG = "(CASE WHEN pg_current_xact_id() IS NOT NULL THEN clock_timestamp() END)"


def committed_before() -> datetime:
    """An instant before which every row stamped by a writer that held a transaction id (PostgreSQL)
    or the write lock (SQLite) when it stamped is visible: nothing stamped before it can still commit.

    PostgreSQL: the start of the oldest other transaction holding a transaction id, or the
    statement's start when there is none. Why it is enough: a writer took its id at some instant x
    and stamped at c > x (same database clock). If this read saw the id, the writer is open (the
    horizon is at most its start, so at most c) or ended (a later snapshot sees its commit). If it
    did not, the id came after this statement began: c > x > the horizon. Either way a row stamped
    before the horizon is committed or gone. The runtime role sees its own sessions in
    pg_stat_activity (all the writers); sessions of other roles count only for a role with
    pg_read_all_stats. A long transaction holding an id anywhere in the database holds the horizon
    back (safe, not wrong); read-only transactions (no id) do not. It can move back, when an old
    transaction takes its first id, never over a row it has already let through.

    SQLite: writers are serialized; the clock read under the write lock (IMMEDIATE) is after every
    commit of a row stamped under it before."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(_COMMITTED_BEFORE_PG)
            return cursor.fetchone()[0]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1")  # (IMMEDIATE: the BEGIN took the write lock)
        return timezone.now()


def stamp_after_xid() -> datetime:
    """The stamp for a row written in the caller's open transaction that `committed_before()` must
    cover: on PostgreSQL the database's clock read after the transaction holds a transaction id (it
    takes one here if it had none); a clock read before that (in Python, or at the transaction's
    start) could fall behind a horizon computed while the writer held no id yet, and an application
    server's clock is not the database's. On SQLite, the clock under the transaction's write lock.
    Must run inside an atomic block."""
    if not connection.in_atomic_block:
        raise RuntimeError("stamp_after_xid must run inside the transaction that writes the row")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {STAMP_AFTER_XID_PG}")
            return cursor.fetchone()[0]
    return timezone.now()


class _StampAfterXid(models.Expression):
    """`STAMP_AFTER_XID_PG` as the value of a column in Django's INSERT."""

    output_field = models.DateTimeField()

    def as_sql(self, compiler, connection):
        return STAMP_AFTER_XID_PG, []


class CommitStampField(models.DateTimeField):
    """`created_at` of a row listed newest first under `committed_before()`: on insert, the stamp of
    `stamp_after_xid()` taken by the row's own INSERT (no statement or round trip of its own).

    PostgreSQL: the INSERT carries `STAMP_AFTER_XID_PG` as the column's value and reads it back with
    RETURNING (`db_returning`) into the instance, so the object, its events and its answer show the
    stamp the list orders by. SQLite: the clock read when the INSERT is sent (under the write lock in
    an atomic block: BEGIN IMMEDIATE took it at entry). Every insert is stamped, whatever value the
    instance held (a backdated one would land below rows already listed); `default=timezone.now`
    stays for reads before the insert; an UPDATE keeps the value; raw saves (fixtures) keep theirs.
    `payera.core.rowsql`'s precompiled INSERT writes the same expression (payments: the hot path).

    The column is a plain `DateTimeField` to migrations (`deconstruct`): the stamping is the
    field's behaviour on save, not the schema."""

    commit_stamp = True

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("default", timezone.now)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.DateTimeField", args, kwargs

    @property
    def db_returning(self) -> bool:
        return connection.vendor == "postgresql"

    def pre_save(self, model_instance, add: bool):
        if not add:
            return super().pre_save(model_instance, add)
        if connection.vendor == "postgresql":
            return _StampAfterXid()
        value = timezone.now()
        setattr(model_instance, self.attname, value)
        return value
