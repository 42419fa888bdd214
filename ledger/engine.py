"""The posting engine behind `ledger.services` (internal: other apps call the services).

Two implementations of one algorithm:
- PostgreSQL: `ledger_post_batch(...)` (ledger/sql/postgresql.sql), one statement per batch;
- portable Python (SQLite, the embedded default; also runnable on PostgreSQL for tests).
Both take the same prepared batch and return one `PostResult` per journal.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connections, transaction
from psycopg.pq import ConnStatus, DiagnosticField, ExecStatus, TransactionStatus

from ledger.errors import AccountNotFoundError, InvalidPostingError, UnbalancedJournalError
from ledger.types import AccountKey, JournalPhase, PostingLine, PostResult, PostStatus, chart_spec

DEFAULT_HOT_SHARDS = 16
# The range of the projections and entries (PostgreSQL's bigint, SQLite's INTEGER): a posting that would
# take a value past it is refused with PostStatus.OVERFLOW.
_MIN, _MAX = -(2**63), 2**63 - 1
# Deadlock/serialization retries taken (outside transactions only); the tests assert none happen.
# "lean": journals posted by ledger_post_one(); "lean_retry": its 'retry' answers (the tests check
# that the state machine goes through both); "direct": its calls through libpq (_execute_lean).
stats = {"retries": 0, "lean": 0, "lean_retry": 0, "direct": 0}
MAX_REFERENCE = 255


def hot_shards() -> int:
    return int(getattr(settings, "LEDGER_HOT_SHARDS", DEFAULT_HOT_SHARDS))


@dataclass(frozen=True, slots=True)
class Item:
    """One journal to post, validated."""

    reference: str
    kind: str
    lines: tuple[PostingLine, ...]
    occurred_at: datetime
    memo: str = ""
    metadata: dict | None = None
    phase: JournalPhase = JournalPhase.POSTED
    reverses_id: int | None = None
    pending_id: int | None = None
    expires_at: datetime | None = None
    extra_accounts: tuple[AccountKey, ...] = ()  # accounts of the pending journal being resolved


def validate(item: Item) -> None:
    if not item.reference or len(item.reference) > MAX_REFERENCE:
        raise InvalidPostingError(f"reference must be 1-{MAX_REFERENCE} characters")
    if not isinstance(item.occurred_at, datetime) or item.occurred_at.utcoffset() is None:
        raise InvalidPostingError("occurred_at must be an aware datetime")
    if item.expires_at is not None and item.expires_at.utcoffset() is None:
        raise InvalidPostingError("expires_at must be an aware datetime")
    if item.phase != JournalPhase.VOID_PENDING and not item.lines:
        raise InvalidPostingError("a journal needs lines")
    if item.phase == JournalPhase.VOID_PENDING and item.lines:
        raise InvalidPostingError("a void posts no lines")
    sums: dict[str, int] = {}
    for line in item.lines:
        if type(line) is not PostingLine and not isinstance(line, PostingLine):
            raise InvalidPostingError("lines must be ledger.types.PostingLine values")
        currency = line.account.currency
        sums[currency] = sums.get(currency, 0) + line.amount
    if any(sums.values()):
        unbalanced = sorted(c for c, s in sums.items() if s)
        raise UnbalancedJournalError(f"journal {item.reference!r} does not balance in {', '.join(unbalanced)}")
    # Text no database keeps alike is refused here, on every engine: PostgreSQL's text and jsonb hold
    # no NUL and jsonb no NaN/Infinity (a raw DataError there), where SQLite stored them.
    if "\x00" in item.reference or "\x00" in item.kind or "\x00" in (item.memo or ""):
        raise InvalidPostingError("a journal's reference, kind and memo cannot hold a NUL character")
    if item.metadata:
        try:
            json.dumps(item.metadata, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidPostingError("metadata must be JSON-serializable (no NaN or Infinity)") from exc
        if _holds_nul(item.metadata):
            raise InvalidPostingError("metadata cannot hold a NUL character")


def _holds_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def db_now() -> datetime:
    """The database's clock (PostgreSQL: `clock_timestamp()`; SQLite: its 'now', to the millisecond,
    never later than the instant). It alone decides whether a pending journal has expired: the posting
    functions read it, and so do the Python engine and the scheduler's expiry run (session 18: those
    read the application's clock, so a clock skew between hosts voided holds early or kept them past
    their expiry, and the engines disagreed on a post)."""
    conn = connections[DEFAULT_DB_ALIAS]
    with conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            cursor.execute("SELECT clock_timestamp()")
            return cursor.fetchone()[0]
        cursor.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
        return datetime.fromisoformat(cursor.fetchone()[0]).replace(tzinfo=UTC)


def post(items: Sequence[Item], *, atomic: bool) -> list[PostResult]:
    for item in items:
        validate(item)
    if not items:
        return []
    conn = connections[DEFAULT_DB_ALIAS]  # once: each `connection.x` is a thread-local lookup
    engine = getattr(settings, "LEDGER_ENGINE", "auto")
    if engine == "auto":
        engine = "postgresql" if conn.vendor == "postgresql" else "python"
    # Outside any transaction the call is its own transaction and may be retried safely.
    attempts = 1 if conn.in_atomic_block else 5
    for attempt in range(attempts):
        try:
            if engine == "postgresql":
                return _post_pg(conn, items, atomic=atomic)
            return _post_python(items, atomic=atomic)
        except DatabaseError as exc:
            sqlstate = getattr(getattr(exc, "__cause__", None), "sqlstate", None)
            if sqlstate in ("40P01", "40001") and attempt + 1 < attempts:
                stats["retries"] += 1
                time.sleep(0.005 * (attempt + 1))
                continue
            raise
    raise AssertionError("unreachable")


def _accounts(items: Sequence[Item]) -> list[AccountKey]:
    keys: set[AccountKey] = set()
    for item in items:
        keys.update(line.account for line in item.lines)
        keys.update(item.extra_accounts)
    return sorted(keys)  # one fixed order: hot shards are taken in key order


# --- PostgreSQL --------------------------------------------------------------------------

_PG_SQL = (
    "SELECT r_status, r_journal FROM {function}("
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::boolean[], %s::boolean[], %s::boolean[], %s::boolean[],"
    " %s::integer, %s::text[], %s::text[], %s::text[], %s::text[]::jsonb[], %s::timestamptz[], %s::smallint[],"
    " %s::bigint[], %s::bigint[], %s::timestamptz[], %s::integer[], %s::integer[], %s::bigint[], %s::boolean)"
)


# The call's arrays travel as PostgreSQL array literals (one text parameter each, cast in SQL):
# adapting 20 Python lists element by element was most of the client's CPU per posting.


def _text_array(values) -> str:
    out = []
    for v in values:
        if v is None:
            out.append("NULL")
        else:
            out.append('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(out) + "}"


def _int_array(values) -> str:
    return "{" + ",".join(["NULL" if v is None else str(int(v)) for v in values]) + "}"


def _bool_array(values) -> str:
    return "{" + ",".join("t" if v else "f" for v in values) + "}"


@functools.lru_cache(maxsize=4096)
def _account_params(keys: tuple[AccountKey, ...]) -> tuple[str, ...]:
    """The call's eight account arrays for one sorted set of keys (chart specs included); the same
    keys come back posting after posting, so they are built once per process."""
    specs = [chart_spec(k.code) for k in keys]
    return (
        _text_array(k.owner for k in keys),
        _text_array(k.code for k in keys),
        _text_array(k.currency for k in keys),
        _text_array(s.type.value if s else None for s in specs),
        _bool_array(bool(s and s.debits_must_not_exceed_credits) for s in specs),
        _bool_array(bool(s and s.credits_must_not_exceed_debits) for s in specs),
        _bool_array(bool(s and s.hot) for s in specs),
        _bool_array(s is not None for s in specs),
    )


def _raw_cursor(conn):
    """A psycopg cursor kept per connection, binding server-side (the call's parameters travel as
    bound values; Django's default cursor binds client-side). Not closed: reused by the next
    posting on this connection."""
    raw = getattr(conn, "_ledger_cursor", None)
    if raw is None or raw.closed or raw.connection is not conn.connection:
        raw = psycopg.Cursor(conn.connection)
        conn._ledger_cursor = raw
    return raw


def _execute(conn, sql: str, params: list) -> tuple:
    """Run the posting call and return its one row.

    The plain path calls psycopg directly on Django's connection: Django's cursor wrapper (execute
    wrappers, debug logging, the error wrapping context and its thread-local lookups) cost more
    client CPU than the rest of a posting. Whenever something watches the queries (DEBUG, tests'
    `django_assert_num_queries`, `connection.execute_wrapper(...)` instrumentation), the call goes
    through Django's wrapper instead, so it is seen and counted as before. Errors are Django's
    either way (`wrap_database_errors`)."""
    conn.ensure_connection()
    raw = _raw_cursor(conn)
    if conn.queries_logged or conn.execute_wrappers:
        cursor = conn.make_debug_cursor(raw) if conn.queries_logged else conn.make_cursor(raw)
        cursor.execute(sql, params)
        return cursor.fetchone()
    conn.validate_no_broken_transaction()
    with conn.wrap_database_errors:
        raw.execute(sql, params)
        return raw.fetchone()


_SQL_ONE = _PG_SQL.format(function="ledger_post_batch")
_SQL_ATOMIC = _PG_SQL.format(function="ledger_post_batch_atomic")


# --- One journal: ledger_post_one() (docs/decisions/ledger-lean-single-journal.md) ----------------

# (owner, code, currency) -> (id, hot) of accounts this process has seen. Safe to keep: an account's
# identity never changes and accounts are never deleted (guard triggers); the function still checks
# each key on the locked row and answers 'retry' when a cached id does not name it (a database
# re-created under a long-lived process), and the entries are dropped then.
_ACCOUNT_IDS: dict[AccountKey, tuple[int, bool]] = {}
_ACCOUNT_IDS_MAX = 100_000  # bounded: emptied when full (a long-lived worker touching every account)

_SQL_LEAN = (
    "SELECT r_status, r_journal, r_account, r_hot FROM ledger_post_one("
    "%s::text[], %s::text[], %s::text[], %s::bigint[], %s::boolean[], %s::integer[], %s::bigint[],"
    " %s::text, %s::text, %s::text, %s::jsonb, %s::timestamptz, %s::smallint, %s::bigint, %s::timestamptz)"
)


def _lean(item: Item) -> bool:
    """Whether one journal takes ledger_post_one(): it resolves no pending journal (a post or void
    reads the pending journal's entries: ledger_post_batch() does that)."""
    return item.pending_id is None and not item.extra_accounts


# The call as a named prepared statement for the direct path (placeholders $1..$15).
_LEAN_STATEMENT = b"ledger_post_one_v1"
_LEAN_PQ_SQL = (_SQL_LEAN.replace("%s", "${}").format(*range(1, 16))).encode()
# The statement's entry in psycopg's own cache of prepared statements on the connection (a key
# psycopg never makes: it keys by (query, types)). psycopg drops its whole cache, and sends
# DEALLOCATE ALL, after a ROLLBACK, a DROP/ALTER, DISCARD ALL or DEALLOCATE ALL that it sees, and
# evicts its oldest statement past `prepared_max`: with the entry in that cache, the entry's absence
# tells that our statement is gone from the server too (docs/decisions/server-side-binding.md).
_LEAN_CACHE_KEY = (b"-- payera ledger_post_one (prepared by ledger.engine)", ())
_PQ_STATEMENT_GONE = "26000"  # invalid_sql_statement_name: our prepared statement was deallocated


def _direct_ok(conn, pg) -> bool:
    """Whether the call may bypass psycopg's cursor (see _execute_lean)."""
    if conn.queries_logged or conn.execute_wrappers or pg.closed:
        return False
    state = pg.pgconn.transaction_status
    # Inside a transaction psycopg has sent its BEGIN already; outside one, only in autocommit (the
    # first statement of a non-autocommit transaction needs psycopg's BEGIN: its cursor sends it).
    return state == TransactionStatus.INTRANS or (state == TransactionStatus.IDLE and pg.autocommit)


def _execute_lean(conn, params: list, direct: bool = True) -> tuple:
    """ledger_post_one()'s one row: (status, journal id as text, account ids, hot flags as array text).

    The direct path hands the call to libpq (`PQexecPrepared` on psycopg's connection, a statement
    prepared once per connection, text parameters and results): psycopg's cursor machinery (query
    conversion, adapters, its non-blocking wait loop, row building) cost the client more CPU than
    the database call itself, and the prepared statement spares the backend the parse and plan of
    the call. It is taken only where it changes nothing else: nothing observes the queries (else
    Django's cursor, so DEBUG, assertNumQueries and execute wrappers see the call), and the
    connection is in autocommit or already inside a transaction (psycopg has sent its BEGIN).
    Errors come back as psycopg's exceptions wrapped by Django's, as through a cursor. The
    statement is entered in psycopg's cache of prepared statements, so a DEALLOCATE ALL that psycopg
    sends or sees (it sends one after any ROLLBACK while it holds prepared statements of its own)
    makes the next call prepare it again first. Should it have been deallocated behind psycopg's
    back, an autocommit call prepares it again and retries; inside a transaction the error is raised
    (the transaction is aborted by then), and the next call prepares it again. `direct=False` (a
    parameter holds a NUL, which libpq's C strings would cut short and psycopg refuses) takes
    psycopg's cursor. With the connection's `prepare_threshold` None (prepared statements off) the
    direct path sends the call unnamed (`PQexecParams`) and prepares nothing."""
    if conn.connection is None:
        conn.ensure_connection()
    pg = conn.connection
    if conn.needs_rollback:
        conn.validate_no_broken_transaction()
    if not (direct and _direct_ok(conn, pg)):
        row = _execute(conn, _SQL_LEAN, params)
        return (row[0], row[1], row[2], row[3])
    pgconn = pg.pgconn
    values = [None if p is None else p.encode() for p in params]
    if pg.prepare_threshold is None:
        # prepared statements are off (DB_PREPARE_THRESHOLD=off: a pooler that cannot keep them, whose
        # next transaction may land on another server session): the unnamed statement, parsed per
        # call, leaves nothing on the session (review 14c)
        try:
            res = pgconn.exec_params(_LEAN_PQ_SQL, values)
        except psycopg.Error:
            with conn.wrap_database_errors:
                raise
        if res.status == ExecStatus.TUPLES_OK:
            return _lean_row(res)
        _raise(conn, res)
    for attempt in (0, 1):
        try:  # libpq failing outright (a lost connection): psycopg's error, wrapped by Django's
            # the mark lives in psycopg's cache on its connection, as the statement does (a pool
            # hands the same connection to other Django connection wrappers)
            names = pg._prepared._names
            if names.get(_LEAN_CACHE_KEY) != _LEAN_STATEMENT:
                res = pgconn.prepare(_LEAN_STATEMENT, _LEAN_PQ_SQL)
                if res.status != ExecStatus.COMMAND_OK:
                    _raise(conn, res)
                names[_LEAN_CACHE_KEY] = _LEAN_STATEMENT
            else:
                names.move_to_end(_LEAN_CACHE_KEY)  # recently used: the last psycopg would evict
            autocommit = pgconn.transaction_status == TransactionStatus.IDLE
            res = pgconn.exec_prepared(_LEAN_STATEMENT, values)
        except psycopg.Error:
            with conn.wrap_database_errors:
                raise
        if res.status == ExecStatus.TUPLES_OK:
            return _lean_row(res)
        sqlstate = res.error_field(DiagnosticField.SQLSTATE)
        if sqlstate and sqlstate.decode() == _PQ_STATEMENT_GONE:
            pg._prepared._names.pop(_LEAN_CACHE_KEY, None)
            if autocommit and attempt == 0:
                continue
        _raise(conn, res)
    raise AssertionError("unreachable")


def _lean_row(res) -> tuple:
    """The direct call's one row (status text; the rest parsed only when the cache needs it)."""
    stats["direct"] += 1
    get = res.get_value
    return (get(0, 0).decode(), get(0, 1), get(0, 2), get(0, 3))


def _raise(conn, res) -> None:
    """Raise a failed libpq result as psycopg does, wrapped by Django (its error classes, the
    connection marked for a health check when the error is not a data error)."""
    encoding = conn.connection.info.encoding
    if res.error_field(DiagnosticField.SQLSTATE) is None and conn.connection.pgconn.status == ConnStatus.BAD:
        # the connection is lost: psycopg's cursor raises OperationalError (no server error state)
        exc = psycopg.OperationalError(res.get_error_message(encoding))
    else:
        exc = psycopg.errors.error_from_result(res, encoding=encoding)
    with conn.wrap_database_errors:
        raise exc


def _array_values(text) -> list:
    """A bigint[] or boolean[] result in text (`{1,NULL}`, `{t,f}`) as Python values."""
    if text is None:
        return []
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode()
    out: list = []
    for v in text[1:-1].split(","):
        if v == "NULL" or v == "":
            out.append(None)
        elif v == "t":
            out.append(True)
        elif v == "f":
            out.append(False)
        else:
            out.append(int(v))
    return out


# AccountKey -> its owner, code and currency as array-literal elements (quoted once per process).
_KEY_TEXT: dict[AccountKey, tuple[str, str, str]] = {}
_STATUS = {status.value: status for status in PostStatus}


def _key_text(key: AccountKey) -> tuple[str, str, str]:
    text = _KEY_TEXT.get(key)
    if text is None:
        if len(_KEY_TEXT) >= _ACCOUNT_IDS_MAX:
            _KEY_TEXT.clear()
        text = _KEY_TEXT[key] = (
            _text_array([key.owner])[1:-1],
            _text_array([key.code])[1:-1],
            _text_array([key.currency])[1:-1],
        )
    return text


def _post_pg_one(conn, item: Item) -> list[PostResult] | None:
    """Post one journal through ledger_post_one(); None when the function answers 'retry', or
    without calling it when the lines move 2^61 or more in all (_GUARDED_FROM)."""
    lines = item.lines
    amounts = [line.amount for line in lines]
    if sum(map(abs, amounts)) >= _GUARDED_FROM:
        return None
    keys = sorted({line.account for line in lines})
    index = {key: i for i, key in enumerate(keys, 1)}
    known = [_ACCOUNT_IDS.get(k) for k in keys]
    texts = [_key_text(k) for k in keys]
    expires = item.expires_at
    owners = ",".join([t[0] for t in texts])
    codes = ",".join([t[1] for t in texts])
    kind = str(item.kind)
    params = [
        "{" + owners + "}",
        "{" + codes + "}",
        "{" + ",".join([t[2] for t in texts]) + "}",
        _int_array([None if k is None else k[0] for k in known]),
        "{" + ",".join(["NULL" if k is None else ("t" if k[1] else "f") for k in known]) + "}",
        _int_array([index[line.account] for line in lines]),
        _int_array(amounts),
        item.reference,
        kind,
        item.memo,
        json.dumps(item.metadata) if item.metadata else "{}",
        item.occurred_at.isoformat(),
        str(int(item.phase)),
        None if item.reverses_id is None else str(item.reverses_id),
        None if expires is None else expires.isoformat(),
    ]
    # (json.dumps escapes a NUL; every other free text is here)
    direct = "\x00" not in item.reference + kind + item.memo + owners + codes
    status, journal_id, ids, hot = _execute_lean(conn, params, direct)
    if status == "retry":
        stats["lean_retry"] += 1
        for key in keys:
            _ACCOUNT_IDS.pop(key, None)
        return None
    stats["lean"] += 1
    if None in known:
        if len(_ACCOUNT_IDS) >= _ACCOUNT_IDS_MAX:
            _ACCOUNT_IDS.clear()
        if not isinstance(ids, list):
            ids, hot = _array_values(ids), _array_values(hot)
        for key, k, account_id, is_hot in zip(keys, known, ids, hot, strict=True):
            if k is None:
                _ACCOUNT_IDS[key] = (account_id, is_hot)
    return [PostResult(0, _STATUS[status], None if journal_id is None else int(journal_id), item.reference)]


# A call whose lines move this much or more in all (a sum of absolute amounts) is posted guarded:
# through ledger_post_batch_atomic(), whose subtransaction turns a value past bigint into the status
# 'overflow'. Below it, ledger_post_one() and an unguarded ledger_post_batch() cannot overflow from
# rows within 2^61 of zero, and answer 'retry' (nothing written) for a row beyond: then guarded too
# (ledger/sql/postgresql.sql, migration 0015).
_GUARDED_FROM = 2**61


def _post_pg(conn, items: Sequence[Item], *, atomic: bool) -> list[PostResult]:
    if len(items) == 1 and _lean(items[0]):
        results = _post_pg_one(conn, items[0])
        if results is not None:
            return results
        # 'retry' (an account to create, a stale cache, a row far from zero), or lines of 2^61 or more
        guarded = True
    else:
        guarded = len(items) > 1 or sum([abs(line.amount) for line in items[0].lines]) >= _GUARDED_FROM
    keys = _accounts(items)
    index = {key: i for i, key in enumerate(keys, 1)}
    line_account: list[int] = []
    line_amount: list[int] = []
    line_end: list[int] = []
    for item in items:
        for line in item.lines:
            line_account.append(index[line.account])
            line_amount.append(line.amount)
        line_end.append(len(line_account))
    params = [
        *_account_params(tuple(keys)),
        hot_shards(),
        _text_array([i.reference for i in items]),
        _text_array([i.kind for i in items]),
        _text_array([i.memo for i in items]),
        _text_array([json.dumps(i.metadata) if i.metadata else "{}" for i in items]),
        _text_array([i.occurred_at.isoformat() for i in items]),
        _int_array([int(i.phase) for i in items]),
        _int_array([i.reverses_id for i in items]),
        _int_array([i.pending_id for i in items]),
        _text_array([i.expires_at.isoformat() if i.expires_at else None for i in items]),
        _int_array(line_end),
        _int_array(line_account),
        _int_array(line_amount),
        atomic,
    ]
    # several journals, or guarded: through the wrapper (a refused atomic batch, a lost reference race,
    # a value past bigint)
    try:
        statuses, journal_ids = _execute(conn, _SQL_ATOMIC if guarded else _SQL_ONE, params)
        if not guarded and statuses[0] == "retry":  # a row near the ends of bigint: nothing written
            statuses, journal_ids = _execute(conn, _SQL_ATOMIC, params)
    except DatabaseError as exc:
        cause = exc.__cause__
        diag = getattr(cause, "diag", None)
        hint = getattr(diag, "message_hint", "")
        if getattr(cause, "sqlstate", None) == "P0002" and hint == "ledger_account_not_found":
            raise AccountNotFoundError(str(getattr(diag, "message_primary", "no such account"))) from exc
        raise
    return [
        PostResult(n, PostStatus(s), jid, item.reference)
        for n, (item, s, jid) in enumerate(zip(items, statuses, journal_ids, strict=True))
    ]


# --- Portable (SQLite) -------------------------------------------------------------------


class _Failed(Exception):
    pass


def _resolve_account(key: AccountKey):
    from ledger.models import Account

    account = Account.objects.filter(owner=key.owner, code=key.code, currency=key.currency, parent=None).first()
    if account is not None:
        return account
    spec = chart_spec(key.code)
    if spec is None:
        raise AccountNotFoundError(f"no account {key.owner}/{key.code}/{key.currency}")
    from ledger.services.accounts import account_create_locked

    return account_create_locked(key=key, spec=spec)


def _lock(account):
    """The row to write for `account`: itself (locked) or a free shard of a hot account."""
    from ledger.models import Account

    if account.hot:
        shard = Account.objects.select_for_update(skip_locked=True).filter(parent=account).order_by("?").first()
        if shard is None:
            shard = Account.objects.select_for_update().get(parent=account, shard=os.getpid() % max(account.shards, 1))
        return shard
    return account


# The next journal id on SQLite: past every id the table has given (AUTOINCREMENT's sqlite_sequence
# too) and every journal whose entries are written but not its row yet (ledger_journal_unsealed).
_SQLITE_NEXT_JOURNAL_ID = (
    "SELECT coalesce(max(m), 0) + 1 FROM ("
    " SELECT max(id) AS m FROM ledger_journal"
    " UNION ALL SELECT seq FROM sqlite_sequence WHERE name = 'ledger_journal'"
    " UNION ALL SELECT max(journal_id) FROM ledger_journal_unsealed)"
)


def _sqlite_next_journal_id(conn) -> int:
    with conn.cursor() as cursor:
        cursor.execute(_SQLITE_NEXT_JOURNAL_ID)
        return cursor.fetchone()[0]


def _post_python(items: Sequence[Item], *, atomic: bool) -> list[PostResult]:
    """The portable engine. On SQLite a journal is sealed (ledger/sql/sqlite.sql, docs/decisions/
    ledger-sqlite-journal-seal.md): its entries are inserted first, then the journal row, whose
    INSERT checks that they balance; the journal's id is chosen first, under the transaction's
    write lock (IMMEDIATE: SQLite has one writer at a time). Elsewhere (the Python engine on
    PostgreSQL, for tests) the journal row comes first and its entries at the end of the batch."""
    from ledger.models import Account, Entry, Journal

    results: list[PostResult | None] = [None] * len(items)
    conn = connections[DEFAULT_DB_ALIAS]
    sealed = conn.vendor == "sqlite"
    next_journal_id: int | None = None
    with transaction.atomic():
        keys = _accounts(items)
        logical = {key: _resolve_account(key) for key in keys}
        rows = {key: _lock(acc) for key, acc in logical.items() if acc.hot}
        plain = sorted(acc.id for acc in logical.values() if not acc.hot)
        locked = {a.id: a for a in Account.objects.select_for_update().filter(id__in=plain).order_by("id")}
        for key, acc in logical.items():
            if not acc.hot:
                rows[key] = locked[acc.id]
        by_row_id = {row.id: key for key, row in rows.items()}
        state = {key: [row.balance, row.debits_pending, row.credits_pending, row.version] for key, row in rows.items()}
        original = {key: list(v) for key, v in state.items()}
        entries: list[Entry] = []
        created_here: dict[str, tuple[Item, int]] = {}
        resolved_here: set[int] = set()  # pending journals posted or voided by this batch
        reversed_here: set[int] = set()  # journals reversed by this batch
        sid = transaction.savepoint() if atomic and len(items) > 1 else None
        failed: int | None = None
        for n, item in enumerate(items):
            undo = {key: list(v) for key, v in state.items()}
            status = PostStatus.CREATED
            journal_id = None
            new_entries: list[tuple[AccountKey, int, int, int, bool]] = []
            # Idempotency first: a known reference answers exists or conflict.
            earlier = created_here.get(item.reference)
            existing = None if earlier else Journal.objects.filter(reference=item.reference).first()
            if earlier is not None:
                journal_id = earlier[1]
                status = PostStatus.EXISTS if _same_item(earlier[0], item) else PostStatus.REFERENCE_CONFLICT
            elif existing is not None:
                journal_id = existing.id
                ids = {k: a.id for k, a in logical.items()}
                status = PostStatus.EXISTS if _same(existing, item, ids) else PostStatus.REFERENCE_CONFLICT
            if status is PostStatus.CREATED and item.pending_id is not None:
                pj = Journal.objects.filter(id=item.pending_id).first()
                if pj is None or pj.phase != JournalPhase.PENDING:
                    status = PostStatus.NOT_PENDING
                elif item.pending_id in resolved_here or Journal.objects.filter(pending_id=item.pending_id).exists():
                    # resolved already: answered before the expiry, frozen and limit checks
                    # (ledger_post_batch's same rule, migration 0014)
                    status = PostStatus.PENDING_ALREADY_RESOLVED
                elif (
                    item.phase == JournalPhase.POST_PENDING
                    and pj.expires_at is not None
                    and pj.expires_at <= db_now()  # the database's clock, as ledger_post_batch
                ):
                    status = PostStatus.PENDING_EXPIRED
                else:
                    key_of = {acc.id: key for key, acc in logical.items()}
                    reserved: dict[AccountKey, int] = {}
                    for account_id, parent_id, amount in Entry.objects.filter(
                        journal_id=item.pending_id
                    ).values_list("account_id", "account__parent_id", "amount"):
                        logical_key = key_of.get(parent_id or account_id)
                        if logical_key is not None:
                            reserved[logical_key] = reserved.get(logical_key, 0) + amount
                        key = by_row_id.get(account_id)
                        if key is None or rows[key].hot:
                            continue  # a hot shard: pending amounts are not tracked there
                        if amount > 0:
                            state[key][1] -= amount
                        else:
                            state[key][2] += amount
                    if item.phase == JournalPhase.POST_PENDING and _exceeds_pending(item, reserved):
                        status = PostStatus.EXCEEDS_PENDING_AMOUNT
            if status is PostStatus.CREATED:
                pend = item.phase == JournalPhase.PENDING
                for line in item.lines:
                    row, st = rows[line.account], state[line.account]
                    if row.status != "active":
                        status = PostStatus.ACCOUNT_FROZEN
                        break
                    if pend:
                        if not row.hot:
                            if line.amount > 0:
                                st[1] += line.amount
                            else:
                                st[2] -= line.amount
                    else:
                        st[0] += line.amount
                    st[3] += 1
                    if max(st) > _MAX or min(st) < _MIN:
                        # past the 64-bit range no column holds (ledger_post_batch: the same status)
                        status = PostStatus.OVERFLOW
                        break
                    new_entries.append((line.account, line.amount, st[0], st[3], pend))
            if status is PostStatus.CREATED:
                for key in dict.fromkeys([*item.extra_accounts, *(line.account for line in item.lines)]):
                    row, st = rows[key], state[key]
                    if (row.debits_must_not_exceed_credits and st[0] + st[1] > _MAX) or (
                        row.credits_must_not_exceed_debits and st[2] - st[0] > _MAX
                    ):
                        status = PostStatus.OVERFLOW  # as ledger_post_batch, whose limit sums are bigint
                        break
                    if row.debits_must_not_exceed_credits and st[0] + st[1] > 0:
                        status = PostStatus.EXCEEDS_CREDITS
                        break
                    if row.credits_must_not_exceed_debits and st[2] - st[0] > 0:
                        status = PostStatus.EXCEEDS_DEBITS
                        break
            if status is PostStatus.CREATED:
                pending_id, reverses_id = item.pending_id, item.reverses_id
                clash = (
                    pending_id
                    and (pending_id in resolved_here or Journal.objects.filter(pending_id=pending_id).exists())
                ) or (
                    reverses_id
                    and (reverses_id in reversed_here or Journal.objects.filter(reverses_id=reverses_id).exists())
                )
                if clash:
                    status = PostStatus.PENDING_ALREADY_RESOLVED if item.pending_id else PostStatus.ALREADY_REVERSED
                elif sealed:
                    # entries first, then the journal row that seals them (its INSERT checks the
                    # balance); no savepoint: SQLite has no concurrent writer to lose a race to
                    if next_journal_id is None:
                        next_journal_id = _sqlite_next_journal_id(conn)
                    journal_id, next_journal_id = next_journal_id, next_journal_id + 1
                    if new_entries:
                        Entry.objects.bulk_create(_entries(journal_id, new_entries, rows))
                    # created_at: the database's default at this INSERT, after the account locks
                    _journal(item, journal_id).save(force_insert=True)
                    created_here[item.reference] = (item, journal_id)
                else:
                    try:
                        # created_at: the database's default at this INSERT, i.e. after the account
                        # locks above (as the SQL functions' clock_timestamp()): per account, time
                        # order = version order (account_balance_at)
                        with transaction.atomic():
                            journal = _journal(item, None)
                            journal.save(force_insert=True)
                    except IntegrityError:
                        # a concurrent writer (PostgreSQL only) took the reference or resolution
                        existing = Journal.objects.filter(reference=item.reference).first()
                        if existing is None:
                            status = (
                                PostStatus.PENDING_ALREADY_RESOLVED if item.pending_id else PostStatus.ALREADY_REVERSED
                            )
                        else:
                            journal_id = existing.id
                            ids = {k: a.id for k, a in logical.items()}
                            ok = _same(existing, item, ids)
                            status = PostStatus.EXISTS if ok else PostStatus.REFERENCE_CONFLICT
                    else:
                        journal_id = journal.id
                        created_here[item.reference] = (item, journal.id)
                        entries.extend(_entries(journal.id, new_entries, rows))
                if status is PostStatus.CREATED:
                    if item.pending_id:
                        resolved_here.add(item.pending_id)
                    if item.reverses_id:
                        reversed_here.add(item.reverses_id)
            results[n] = PostResult(n, status, journal_id, item.reference)
            if status is not PostStatus.CREATED:
                state = undo
                if status is not PostStatus.EXISTS and atomic and failed is None:
                    failed = n
                    break
        if failed is not None and sid is not None:
            transaction.savepoint_rollback(sid)
            out = [PostResult(n, PostStatus.LINKED_EVENT_FAILED, None, it.reference) for n, it in enumerate(items)]
            out[failed] = results[failed]  # type: ignore[call-overload]
            return out
        if sid is not None:
            transaction.savepoint_commit(sid)
        if entries:
            Entry.objects.bulk_create(entries)
        for key, st in state.items():
            if st != original[key]:
                Account.objects.filter(id=rows[key].id).update(
                    balance=st[0], debits_pending=st[1], credits_pending=st[2], version=st[3]
                )
    return [
        r if r is not None else PostResult(n, PostStatus.LINKED_EVENT_FAILED, None, items[n].reference)
        for n, r in enumerate(results)
    ]


def _journal(item: Item, journal_id: int | None):
    from ledger.models import Journal

    return Journal(
        id=journal_id,
        reference=item.reference,
        kind=str(item.kind),
        phase=int(item.phase),
        memo=item.memo,
        metadata=item.metadata or {},
        occurred_at=item.occurred_at,
        reverses_id=item.reverses_id,
        pending_id=item.pending_id,
        expires_at=item.expires_at,
    )


def _entries(journal_id: int, new_entries, rows) -> list:
    from ledger.models import Entry

    return [
        Entry(
            journal_id=journal_id,
            account_id=rows[key].id,
            currency=key.currency,
            amount=amount,
            balance_after=bal,
            version=ver,
            is_pending=pend,
        )
        for key, amount, bal, ver, pend in new_entries
    ]


def _exceeds_pending(item: Item, reserved: dict[AccountKey, int]) -> bool:
    """Whether a post moves more than its pending journal reserved: on an account it reserved
    nothing on, in the other direction, or more (ledger_post_batch's same rule)."""
    got: dict[AccountKey, int] = {}
    for line in item.lines:
        got[line.account] = got.get(line.account, 0) + line.amount
    for key, amount in got.items():
        cap = reserved.get(key, 0)
        if cap == 0 or amount == 0 or (amount > 0) != (cap > 0) or abs(amount) > abs(cap):
            return True
    return False


def _same(existing, item: Item, ids: dict[AccountKey, int]) -> bool:
    """Whether `item` is the stored journal `existing` (a hot account's entries are on its shards:
    their parent is the logical account)."""
    from ledger.models import Entry

    stored = [
        (parent or account, amount)
        for parent, account, amount in Entry.objects.filter(journal=existing).values_list(
            "account__parent_id", "account_id", "amount"
        )
    ]
    links = (existing.phase, existing.pending_id, existing.reverses_id)
    return _same_posting(links, stored, item, lambda key: ids[key])


def _same_item(a: Item, b: Item) -> bool:
    """Whether `b` is `a`, a journal earlier in the same batch (not written yet)."""
    return _same_posting(_links(a), [(line.account, line.amount) for line in a.lines], b, lambda key: key)


def _links(item: Item) -> tuple:
    return int(item.phase), item.pending_id, item.reverses_id


def _same_posting(links: tuple, lines: list, item: Item, account) -> bool:
    """The same journal (ledger_same_posting's rule, ledger/sql/postgresql.sql): the same phase,
    pending journal resolved and journal reversed (`links`), and the same lines as a multiset of
    (account, amount), the item's accounts named as `lines` names them (`account`)."""
    mine = sorted((account(line.account), line.amount) for line in item.lines)
    return links == _links(item) and sorted(lines) == mine
