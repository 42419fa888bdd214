"""Set-based replay of the whole ledger (read-only): what `manage.py ledger_verify` runs.

Each statement is one SQL query over every entry, portable between PostgreSQL and SQLite
(window functions). A statement answers one check or several that share their pass over the
entries: it returns (check number, offending id) rows, at most `limit` per check.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from dataclasses import dataclass, field

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

# The first `limit` offending ids of each check k of a statement's `bad` rows (k, id), with how many
# there are (n): the first row of each check always comes back, so a check that found something is
# counted whatever `limit` lists (review 14c: with --limit 0 every problem disappeared).
_FIRST = """
    SELECT k, id, rn, n FROM (SELECT k, id, row_number() OVER (PARTITION BY k ORDER BY id) AS rn,
                                     count(*) OVER (PARTITION BY k) AS n FROM bad) t
     WHERE rn <= %(limit)s OR rn = 1"""

# (names of the checks, the statement defining `bad`): rows (index into names, id).
STATEMENTS: tuple[tuple[tuple[str, ...], str], ...] = (
    # Σ amount = 0 per journal and currency.
    (
        ("unbalanced_journals",),
        """
        WITH bad AS MATERIALIZED (
            SELECT DISTINCT 0 AS k, journal_id AS id FROM ledger_entry
             GROUP BY journal_id, currency HAVING sum(amount) <> 0
        )""",
    ),
    # Per account: versions 1..n without gaps, and each balance_after equals the running sum.
    # (By induction: version n is the n-th entry, and each balance_after is the previous one plus
    # this entry's posted amount -- the running sum.) A sum past the bigint range is a mismatch (no
    # balance_after holds it), found before it is computed: `previous + amt` raised on PostgreSQL, and
    # on SQLite became a float that could round onto a stored -2^63 (session 18).
    (
        ("entries_replay_mismatch",),
        """
        WITH bad AS MATERIALIZED (
            SELECT 0 AS k, id FROM (
                SELECT id, version, balance_after, CASE WHEN is_pending THEN 0 ELSE amount END AS amt,
                       row_number() OVER w AS rn,
                       coalesce(lag(balance_after) OVER w, 0) AS previous
                  FROM ledger_entry
                WINDOW w AS (PARTITION BY account_id ORDER BY version)
            ) t WHERE version <> rn
                   OR CASE WHEN amt > 0 AND previous > 9223372036854775807 - amt THEN 1
                           WHEN amt < 0 AND previous < (-9223372036854775807 - 1) - amt THEN 1
                           WHEN balance_after <> previous + amt THEN 1 ELSE 0 END = 1
        )""",
    ),
    # Per account, from one replay of its entries and open pendings (pending journals without a
    # resolution): the projection equals the replay (projection_mismatch); no limited account is
    # beyond its limit in the replay (limit_breaches) -- posted sum plus open pending amounts, per
    # the account's flags. (The projection itself cannot breach: its CHECK constraints refuse it.)
    # Nor was it beyond its limit after any journal of its history (limit_breached_history: the
    # entry that left it there): the engines check limits after each journal's lines, so the last
    # entry of each journal on a limited account has a balance_after within the limit (the posted
    # balance alone, a necessary condition: pending amounts only add to it), unless that journal was
    # reversed (the runbook's correction of a breach: entries are never removed, so the breach stays
    # in the history, corrected; docs/runbooks/ledger-verify-failing.md). The same pass gives
    # each account's highest and lowest balance_after; only accounts whose extremes pass their limit
    # (none, in a sound ledger: their entries are not read again) are looked at entry by entry.
    (
        ("projection_mismatch", "limit_breaches", "limit_breached_history"),
        """
        WITH posted AS MATERIALIZED (
            SELECT account_id, sum(CASE WHEN is_pending THEN 0 ELSE amount END) AS bal, count(*) AS n,
                   max(balance_after) AS hi, min(balance_after) AS lo
              FROM ledger_entry GROUP BY account_id
        ), reserved AS MATERIALIZED (
            SELECT e.account_id,
                   sum(CASE WHEN e.amount > 0 THEN e.amount ELSE 0 END) AS dp,
                   sum(CASE WHEN e.amount < 0 THEN -e.amount ELSE 0 END) AS cp
              FROM ledger_entry e JOIN ledger_journal j ON j.id = e.journal_id
             WHERE j.phase = 1
               AND NOT EXISTS (SELECT 1 FROM ledger_journal r WHERE r.pending_id = j.id)
             GROUP BY e.account_id
        ), replay AS MATERIALIZED (
            SELECT a.id, a.hot, a.balance, a.version, a.debits_pending, a.credits_pending,
                   a.debits_must_not_exceed_credits AS dmnec, a.credits_must_not_exceed_debits AS cmned,
                   coalesce(e.bal, 0) AS bal, coalesce(e.n, 0) AS n,
                   coalesce(p.dp, 0) AS dp, coalesce(p.cp, 0) AS cp, e.hi, e.lo
              FROM ledger_account a
              LEFT JOIN posted e ON e.account_id = a.id
              LEFT JOIN reserved p ON p.account_id = a.id
        ), suspects AS MATERIALIZED (
            SELECT id, dmnec, cmned FROM replay WHERE (dmnec AND hi > 0) OR (cmned AND lo < 0)
        ), bad AS MATERIALIZED (
            SELECT 0 AS k, id FROM replay
             WHERE balance <> bal OR version <> n
                OR debits_pending <> CASE WHEN hot THEN 0 ELSE dp END
                OR credits_pending <> CASE WHEN hot THEN 0 ELSE cp END
            UNION ALL
            SELECT 1, id FROM replay WHERE (dmnec AND bal + dp > 0) OR (cmned AND cp - bal > 0)
            UNION ALL
            SELECT 2, e.id FROM ledger_entry e JOIN suspects s ON s.id = e.account_id
             WHERE ((s.dmnec AND e.balance_after > 0) OR (s.cmned AND e.balance_after < 0))
               AND NOT EXISTS (SELECT 1 FROM ledger_entry x WHERE x.account_id = e.account_id
                                 AND x.journal_id = e.journal_id AND x.version > e.version)
               AND NOT EXISTS (SELECT 1 FROM ledger_journal r WHERE r.reverses_id = e.journal_id)
        )""",
    ),
    # One pass over journals and their entries. Entries of pending journals are pending entries
    # and only those; a void has no entries; currency is the account's; a hot account's entries
    # live on its shards; an entry's account exists (entry_shape_mismatch: accounts are never
    # deleted and their id never changes, but no foreign key holds an entry's account_id). Every
    # journal but a void has entries (journals_without_entries) -- at least two: amounts are never
    # 0, and a journal with one entry does not balance (unbalanced_journals).
    # (A materialized CTE: the whole-table join must not turn into nested loops.)
    (
        ("entry_shape_mismatch", "journals_without_entries"),
        """
        WITH bad AS MATERIALIZED (
            SELECT CASE WHEN e.id IS NULL THEN 1 ELSE 0 END AS k, coalesce(e.id, j.id) AS id
              FROM ledger_journal j
              LEFT JOIN ledger_entry e ON e.journal_id = j.id
              LEFT JOIN ledger_account a ON a.id = e.account_id
             WHERE (e.id IS NULL AND j.phase <> 3)
                OR (e.id IS NOT NULL
                    AND (a.id IS NULL OR e.is_pending <> (j.phase = 1) OR j.phase = 3
                         OR e.currency <> a.currency OR (a.hot AND a.parent_id IS NULL)))
        )""",
    ),
    # A post or void resolves a pending journal (phase 1), and only posts and voids resolve one
    # (the CHECK ledger_journal_pending_link refuses a pending_id on any other phase).
    # A post moves no more than its pending journal reserved (post_exceeds_pending, the engines'
    # exceeds_pending_amount): per logical account (a hot account's shards together), its entries'
    # sum is on an account the pending journal reserved on, in the same direction, at most as much.
    (
        ("resolution_mismatch", "post_exceeds_pending"),
        """
        WITH posts AS MATERIALIZED (
            SELECT id, pending_id FROM ledger_journal WHERE phase = 2 AND pending_id IS NOT NULL
        ), raw_legs AS MATERIALIZED (
            SELECT e.journal_id, e.account_id, sum(e.amount) AS amount
              FROM (SELECT id FROM posts UNION SELECT pending_id FROM posts) x
              JOIN ledger_entry e ON e.journal_id = x.id
             GROUP BY e.journal_id, e.account_id
        ), shards AS MATERIALIZED (
            SELECT id, parent_id FROM ledger_account WHERE parent_id IS NOT NULL
        ), legs AS MATERIALIZED (
            SELECT r.journal_id, coalesce(s.parent_id, r.account_id) AS account, sum(r.amount) AS amount
              FROM raw_legs r LEFT JOIN shards s ON s.id = r.account_id
             GROUP BY r.journal_id, coalesce(s.parent_id, r.account_id)
        ), bad AS MATERIALIZED (
            SELECT 0 AS k, r.id FROM ledger_journal r
             WHERE r.phase IN (2, 3)
               AND NOT EXISTS (SELECT 1 FROM ledger_journal p WHERE p.id = r.pending_id AND p.phase = 1)
            UNION
            SELECT 1, p.id FROM posts p JOIN legs g ON g.journal_id = p.id
              LEFT JOIN legs c ON c.journal_id = p.pending_id AND c.account = g.account
             WHERE c.amount IS NULL OR c.amount = 0 OR g.amount = 0
                OR (g.amount > 0) <> (c.amount > 0)
                OR CASE WHEN g.amount > 0 THEN g.amount > c.amount ELSE g.amount < c.amount END
        )""",
    ),
    # A reversal is posted (phase 0), reverses a posted journal or the post of a pending one, and
    # its entries mirror the original's: the same (logical account, -amount) lines, a hot account's
    # shards counting as the account. Each entry of a reversal or of a reversed journal counts
    # +1 / -1 on (reversal, logical account, amount as the reversal carries it): all must cancel.
    # An original's leg of -2^63 has no mirror in bigint (its negation raised on PostgreSQL): its key
    # is NULL, a group of its own that no reversal leg cancels (session 18).
    (
        ("reversal_mismatch",),
        """
        WITH rev AS MATERIALIZED (
            SELECT r.id, r.reverses_id, r.phase, o.phase AS original_phase
              FROM ledger_journal r LEFT JOIN ledger_journal o ON o.id = r.reverses_id
             WHERE r.reverses_id IS NOT NULL
        ), side AS MATERIALIZED (
            SELECT id AS journal_id, id AS reversal_id, 1 AS sign FROM rev
            UNION ALL
            SELECT reverses_id, id, -1 FROM rev
        ), legs AS MATERIALIZED (
            SELECT e.journal_id, coalesce(a.parent_id, a.id) AS account, e.amount
              FROM ledger_entry e JOIN ledger_account a ON a.id = e.account_id
             WHERE e.journal_id IN (SELECT journal_id FROM side)
        ), bad AS MATERIALIZED (
            SELECT 0 AS k, id FROM rev WHERE phase <> 0 OR original_phase IS NULL OR original_phase NOT IN (0, 2)
            UNION
            SELECT 0, s.reversal_id FROM side s JOIN legs l ON l.journal_id = s.journal_id
             GROUP BY s.reversal_id, l.account,
                      CASE WHEN s.sign = 1 THEN l.amount WHEN l.amount > -9223372036854775807 - 1 THEN -l.amount END
            HAVING sum(s.sign) <> 0
        )""",
    ),
)

CHECKS: tuple[str, ...] = tuple(name for names, _ in STATEMENTS for name in names)

# The statements from the costliest (measured on a bench ledger of 400k entries: the replay's window
# sort ~550 ms, the per-journal sum ~260, the journal/entry join ~230, reversals ~100, projections ~70,
# resolutions ~20): connections sharing them take the longest first and finish together.
_BY_COST = (
    "entries_replay_mismatch",
    "unbalanced_journals",
    "entry_shape_mismatch",
    "reversal_mismatch",
    "projection_mismatch",
    "resolution_mismatch",
)


@dataclass
class VerifyReport:
    entries: int = 0
    journals: int = 0
    accounts: int = 0
    problems: dict[str, list[int]] = field(default_factory=dict)  # up to `limit` offending ids per check
    connections: int = 1  # database connections the statements ran on (all on one snapshot)
    counts: dict[str, int] = field(default_factory=dict)  # how many each check found (all of them)

    @property
    def ok(self) -> bool:
        """No check found a problem, whatever the number of ids listed."""
        return not any(self.counts.values()) and not any(self.problems.values())


def default_workers() -> int:
    """Connections for a whole-ledger verify on PostgreSQL: the statements are CPU-bound and
    independent, so one per core up to two (more only splits the same six statements finer)."""
    return max(1, min(2, os.cpu_count() or 1))


def _prepare(cursor) -> None:
    """Per-transaction settings of a verify connection (PostgreSQL)."""
    cursor.execute("SET LOCAL work_mem = '256MB'")
    # whole-table passes: sequential scans and in-memory sorts beat index order here
    cursor.execute("SET LOCAL enable_indexscan = off")
    # JIT compiling these plans costs more than it saves (seen: 650 ms to compile the reversal check
    # on a ledger without reversals, against 10 ms to run it)
    cursor.execute("SET LOCAL jit = off")


def _run(cursor, names: tuple[str, ...], sql: str, limit: int | None, vendor: str) -> dict[str, list[int]]:
    if vendor == "sqlite":
        # SQLite's sum() raises on a sum past the bigint range (PostgreSQL's is numeric): ledger_sum()
        # (ledger/db.py) answers such a sum as +-Infinity, unequal to any balance, of the right sign
        sql = sql.replace(" hot THEN", " hot = 1 THEN").replace("sum(", "ledger_sum(")
    cursor.execute(sql + _FIRST, {"limit": 2**62 if limit is None else limit})  # noqa: S608 (constants)
    found: dict[str, tuple[list[int], int]] = {name: ([], 0) for name in names}
    for k, id_, rn, n in cursor.fetchall():
        ids, _ = found[names[k]]
        if limit is None or rn <= limit:
            ids.append(id_)
        found[names[k]] = (ids, n)
    return found


def _helper(snapshot: str, todo: queue.SimpleQueue, limit: int | None, out: list, failed: list) -> None:
    """A second connection's share: statements taken from `todo`, on the exported `snapshot`."""
    conn = connections[DEFAULT_DB_ALIAS]  # this thread's own connection
    try:
        with transaction.atomic(using=DEFAULT_DB_ALIAS), conn.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            # a SET takes no bound parameter; the id is PostgreSQL's own (hex digits and dashes)
            if not re.fullmatch(r"[0-9A-F-]+", snapshot):
                raise ValueError(f"unexpected snapshot id {snapshot!r}")
            cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            _prepare(cursor)
            while (job := _take(todo, failed)) is not None:
                out.append(_run(cursor, *job, limit, conn.vendor))
    except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread, raised there)
        failed.append(exc)
    finally:
        conn.close()


def _take(todo: queue.SimpleQueue, failed: list):
    """The next statement, or None when none is left or another connection failed."""
    if failed:
        return None
    try:
        return todo.get_nowait()
    except queue.Empty:
        return None


def ledger_verify(
    *, limit: int | None = 100, checks: tuple[str, ...] | None = None, workers: int | None = None
) -> VerifyReport:
    """Run the checks (read-only; one snapshot on PostgreSQL, with sort/hash memory for whole-table
    scans instead of spilling to disk). `limit`: offending ids listed per check (None: all; 0: none,
    the report still counts them and is not ok); a negative limit is a ValueError.

    On PostgreSQL outside a transaction, the statements are shared among `workers` connections
    (default: one per core, at most two) that all read the snapshot this connection exports
    (`pg_export_snapshot()`): the same answer as one connection, in about half the time on two
    cores. Inside a caller's transaction (ledger_rebuild, tests) the statements run on the caller's
    connection, which sees that transaction's own writes."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more (offending ids listed per check), not {limit}")
    report = VerifyReport()
    jobs = [(names, sql) for names, sql in STATEMENTS if not checks or set(names) & set(checks)]
    outer = connection.in_atomic_block
    vendor = connection.vendor
    if workers is None:
        workers = default_workers()
    helpers = 0 if outer or vendor != "postgresql" else min(workers, len(jobs)) - 1
    found: list[dict[str, list[int]]] = []
    with transaction.atomic(), connection.cursor() as cursor:
        if vendor == "postgresql":
            if not outer:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            _prepare(cursor)
        todo: queue.SimpleQueue = queue.SimpleQueue()
        for job in sorted(jobs, key=lambda job: _BY_COST.index(job[0][0])):
            todo.put(job)
        failed: list[BaseException] = []
        threads = []
        if helpers > 0:
            cursor.execute("SELECT pg_export_snapshot()")
            (snapshot,) = cursor.fetchone()
            for _ in range(helpers):
                thread = threading.Thread(target=_helper, args=(snapshot, todo, limit, found, failed), daemon=True)
                thread.start()
                threads.append(thread)
        try:
            while (job := _take(todo, failed)) is not None:
                found.append(_run(cursor, *job, limit, vendor))
        finally:
            for thread in threads:
                thread.join()
        if failed:
            raise failed[0]
        report.connections = 1 + len(threads)
        for result in found:
            for name, (ids, count) in result.items():
                if not checks or name in checks:
                    report.problems[name] = sorted(ids)
                    report.counts[name] = count
        report.problems = {name: report.problems[name] for name in CHECKS if name in report.problems}
        report.counts = {name: report.counts[name] for name in CHECKS if name in report.counts}
        cursor.execute(
            "SELECT (SELECT count(*) FROM ledger_entry), (SELECT count(*) FROM ledger_journal),"
            " (SELECT count(*) FROM ledger_account)"
        )
        report.entries, report.journals, report.accounts = cursor.fetchone()
        if outer:  # in the caller's transaction (ledger_rebuild): undo the SET LOCALs, nothing else was done
            transaction.set_rollback(True)
    return report
