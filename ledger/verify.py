"""Set-based replay of the whole ledger (read-only): what `manage.py ledger_verify` runs.

Each check is one SQL statement over every entry, portable between PostgreSQL and SQLite
(window functions), returning the offending ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection, transaction

_P = "1"  # JournalPhase.PENDING

CHECKS: dict[str, str] = {
    # Σ amount = 0 per journal and currency.
    "unbalanced_journals": """
        SELECT DISTINCT journal_id FROM ledger_entry
         GROUP BY journal_id, currency HAVING sum(amount) <> 0 ORDER BY 1 LIMIT %(limit)s""",
    # Per account: versions 1..n without gaps, and each balance_after equals the running sum.
    # (By induction: version n is the n-th entry, and each balance_after is the previous one plus
    # this entry's posted amount -- the running sum, in bigint arithmetic.)
    "entries_replay_mismatch": """
        WITH bad AS MATERIALIZED (
            SELECT id FROM (
                SELECT id, version, balance_after, is_pending, amount,
                       row_number() OVER w AS rn,
                       coalesce(lag(balance_after) OVER w, 0) AS previous
                  FROM ledger_entry
                WINDOW w AS (PARTITION BY account_id ORDER BY version)
            ) t WHERE version <> rn OR balance_after <> previous + CASE WHEN is_pending THEN 0 ELSE amount END
        ) SELECT id FROM bad ORDER BY id LIMIT %(limit)s""",
    # Per account: the projection equals the replay of its entries (and of its open pendings).
    "projection_mismatch": """
        SELECT a.id FROM ledger_account a
          LEFT JOIN (SELECT account_id,
                            sum(CASE WHEN is_pending THEN 0 ELSE amount END) AS bal,
                            count(*) AS n
                       FROM ledger_entry GROUP BY account_id) e ON e.account_id = a.id
          LEFT JOIN (SELECT e.account_id,
                            sum(CASE WHEN e.amount > 0 THEN e.amount ELSE 0 END) AS dp,
                            sum(CASE WHEN e.amount < 0 THEN -e.amount ELSE 0 END) AS cp
                       FROM ledger_entry e JOIN ledger_journal j ON j.id = e.journal_id
                      WHERE j.phase = 1
                        AND NOT EXISTS (SELECT 1 FROM ledger_journal r WHERE r.pending_id = j.id)
                      GROUP BY e.account_id) p ON p.account_id = a.id
         WHERE a.balance <> coalesce(e.bal, 0)
            OR a.version <> coalesce(e.n, 0)
            OR a.debits_pending <> CASE WHEN a.hot THEN 0 ELSE coalesce(p.dp, 0) END
            OR a.credits_pending <> CASE WHEN a.hot THEN 0 ELSE coalesce(p.cp, 0) END
         ORDER BY a.id LIMIT %(limit)s""",
    # No limited account beyond its limit.
    "limit_breaches": """
        SELECT id FROM ledger_account
         WHERE (debits_must_not_exceed_credits AND balance + debits_pending > 0)
            OR (credits_must_not_exceed_debits AND credits_pending - balance > 0)
         ORDER BY id LIMIT %(limit)s""",
    # Entries of pending journals are pending entries and only those; currency is the account's;
    # a hot account's entries live on its shards.
    # (A materialized CTE: ORDER BY id LIMIT n must not turn the whole-table join into nested loops.)
    "entry_shape_mismatch": """
        WITH bad AS MATERIALIZED (
            SELECT e.id FROM ledger_entry e
              JOIN ledger_journal j ON j.id = e.journal_id
              JOIN ledger_account a ON a.id = e.account_id
             WHERE e.is_pending <> (j.phase = 1) OR e.currency <> a.currency OR (a.hot AND a.parent_id IS NULL)
        ) SELECT id FROM bad ORDER BY id LIMIT %(limit)s""",
}


@dataclass
class VerifyReport:
    entries: int = 0
    journals: int = 0
    accounts: int = 0
    problems: dict[str, list[int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())


def ledger_verify(*, limit: int = 100, checks: tuple[str, ...] | None = None) -> VerifyReport:
    """Run the checks (read-only; one snapshot on PostgreSQL, with sort/hash memory for whole-table
    scans instead of spilling to disk)."""
    report = VerifyReport()
    outer = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            if not outer:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SET LOCAL work_mem = '256MB'")
            # whole-table passes: sequential scans and in-memory sorts beat index order here
            cursor.execute("SET LOCAL enable_indexscan = off")
        for name, sql in CHECKS.items():
            if checks and name not in checks:
                continue
            if connection.vendor == "sqlite":
                sql = sql.replace("a.hot THEN", "a.hot = 1 THEN")
            cursor.execute(sql, {"limit": limit})
            report.problems[name] = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT (SELECT count(*) FROM ledger_entry), (SELECT count(*) FROM ledger_journal),"
            " (SELECT count(*) FROM ledger_account)"
        )
        report.entries, report.journals, report.accounts = cursor.fetchone()
    return report
