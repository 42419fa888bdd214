"""Reads of settlement and payouts. Selectors that serve merchants take `merchant`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from ledger import selectors as ledger_selectors
from ledger.errors import JournalNotFoundError
from payera.merchants.models import Merchant
from payera.merchants.scoping import owned_get
from reconciliation.errors import PayoutNotFoundError
from reconciliation.models import Payout, SettlementItem


def payout_get(*, merchant: Merchant, payout_id: str) -> Payout:
    return owned_get(Payout.objects.all(), merchant=merchant, pk=payout_id, error=PayoutNotFoundError)


def payout_list(*, merchant: Merchant) -> QuerySet[Payout]:
    return Payout.objects.for_merchant(merchant)


@dataclass(frozen=True, slots=True)
class StatementLine:
    kind: str  # capture, refund, chargeback, ... (the ledger journal's kind)
    reference: str  # the ledger journal's business reference
    occurred_at: datetime
    amount: int  # positive: owed to the merchant
    settlement_run: str
    settlement_reference: str


@dataclass(frozen=True, slots=True)
class PayoutStatement:
    payout: Payout
    lines: tuple[StatementLine, ...]
    carried_in: int  # available before the payout that no listed transaction explains (kept back earlier)
    settled: int  # sum of the lines
    reserve_kept: int
    amount: int  # carried_in + settled - reserve_kept
    # when the payout was made: its journal's `occurred_at` (the `now` of its run, the day of its
    # `payout_date`), not `payout.created_at` — the database's commit stamp of its row
    # (payera.core.horizon), which a run's `now` does not set
    occurred_at: datetime

    @property
    def ties_out(self) -> bool:
        return self.carried_in + self.settled - self.reserve_kept == self.amount


def payout_statement(*, payout: Payout) -> PayoutStatement:
    """Every ledger transaction a payout carries: the merchant-pending entries settled by the
    settlement runs it paid out, oldest first, and how they add up to the payout."""
    items = (
        SettlementItem.objects.filter(run__payout=payout)
        .select_related("run")
        .order_by("occurred_at", "entry_id")
    )
    lines = tuple(
        StatementLine(i.kind, i.journal_reference, i.occurred_at, i.amount, i.run_id, i.run.journal_reference)
        for i in items
    )
    settled = sum(line.amount for line in lines)
    try:
        occurred_at = ledger_selectors.journal_get(reference=payout.journal_reference).occurred_at
    except JournalNotFoundError:  # not posted (a row written by hand): its row's stamp
        occurred_at = payout.created_at
    return PayoutStatement(
        payout=payout,
        lines=lines,
        carried_in=payout.available_before - settled,
        settled=settled,
        reserve_kept=payout.reserve_kept,
        amount=payout.amount,
        occurred_at=occurred_at,
    )


# --- reconciliation reports (finance, back office: PSP-wide, not merchant-scoped) ---------------
AGING_BUCKETS = ((0, 1, "0-1 days"), (2, 3, "2-3 days"), (4, 7, "4-7 days"), (8, 30, "8-30 days"),
                 (31, None, "over 30 days"))  # fmt: skip


def refund_reversed_sql(alias: str) -> str:
    """SQL: the refund `alias` was reversed: it had succeeded and the PSP failed it afterwards (the
    shopper's bank sent it back), so payments mirrored its journal (`refund_reversal:<re>`,
    payments.services.refunds._refund_reverse) and it is `failed` with the time of its return
    (`reversed_at`, set once in the same transaction as that journal). A refund that failed without
    ever succeeding has neither (its failure code alone does not tell them apart)."""
    return f"({alias}.status = 'failed' AND {alias}.reversed_at IS NOT NULL)"


def _unsettled_sql() -> str:
    """Every capture, refund, chargeback and won dispute's reversal at one PSP that no settled
    report line has cleared: (currency, signed gross, when, object id). Captures count +, refunds -, each
    dispute's chargeback - (from when it opened) and, once it is won, its reversal + (from when it
    was decided): the PSP reports both, each settled by its own line (a won dispute neither of whose
    lines settled yet nets to 0). A refund returned after it succeeded (reversed) likewise: its
    refund - (from when it succeeded, `succeeded_at`) until a `refund` line names it, and its
    reversal + (from when it was returned, `reversed_at`) until a `refund_reversal` line names it.
    A refund's times are its own, set once: a later save of the refund moves neither."""
    from payments import selectors as payments_selectors
    from reconciliation.models import ReconciliationRun, StatementLine

    t = payments_selectors.settlement_tables()
    lines, runs = StatementLine._meta.db_table, ReconciliationRun._meta.db_table

    # a line names its journal from the match on; the journal is posted by its run's finish (the
    # run then done): the lines of an import not finished (running, or failed without its undo)
    # settle nothing yet, as for the check (finished runs' totals) and the resolutions
    def settled(kind: str = "") -> str:
        return (f"NOT EXISTS (SELECT 1 FROM {lines} l WHERE l.psp = a.connector AND l.object_id = x.id"
                f"{f' AND l.kind = {kind!r}' if kind else ''} AND l.journal_reference <> ''"
                f" AND EXISTS (SELECT 1 FROM {runs} r WHERE r.id = l.run_id AND r.status = 'done'))")  # fmt: skip

    return f"""
SELECT x.currency, x.amount AS gross, x.updated_at AS at, x.id AS object_id FROM {t["capture"]} x
  JOIN {t["attempt"]} a ON a.id = x.attempt_id WHERE a.connector = %s AND x.status = 'succeeded' AND {settled()}
UNION ALL
SELECT x.currency, -x.amount, x.succeeded_at, x.id FROM {t["refund"]} x
  JOIN {t["attempt"]} a ON a.id = x.attempt_id WHERE a.connector = %s AND x.status = 'succeeded' AND {settled()}
UNION ALL
SELECT x.currency, -x.amount, x.created_at, x.id FROM {t["dispute"]} x
  JOIN {t["attempt"]} a ON a.id = x.attempt_id WHERE a.connector = %s AND {settled("chargeback")}
UNION ALL
SELECT x.currency, x.amount, COALESCE(x.closed_at, x.updated_at), x.id FROM {t["dispute"]} x
  JOIN {t["attempt"]} a ON a.id = x.attempt_id WHERE a.connector = %s AND x.status = 'won'
   AND {settled("chargeback_reversal")}
UNION ALL
SELECT x.currency, -x.amount, x.succeeded_at, x.id FROM {t["refund"]} x
  JOIN {t["attempt"]} a ON a.id = x.attempt_id WHERE a.connector = %s AND {refund_reversed_sql("x")}
   AND {settled("refund")}
UNION ALL
SELECT x.currency, x.amount, x.reversed_at, x.id FROM {t["refund"]} x
  JOIN {t["attempt"]} a ON a.id = x.attempt_id WHERE a.connector = %s AND {refund_reversed_sql("x")}
   AND {settled("refund_reversal")}
"""


def _captured_net(*, psp: str) -> dict[str, int]:
    """Per currency: succeeded captures - succeeded refunds - disputes not won at `psp` (sums,
    no anti-join with the report lines)."""
    from django.db import connection

    from payments import selectors as payments_selectors

    t = payments_selectors.settlement_tables()
    sql = f"""
SELECT currency, COALESCE(SUM(gross), 0) FROM (
  SELECT x.currency, x.amount AS gross FROM {t["capture"]} x JOIN {t["attempt"]} a ON a.id = x.attempt_id
   WHERE a.connector = %s AND x.status = 'succeeded'
  UNION ALL
  SELECT x.currency, -x.amount FROM {t["refund"]} x JOIN {t["attempt"]} a ON a.id = x.attempt_id
   WHERE a.connector = %s AND x.status = 'succeeded'
  UNION ALL
  SELECT x.currency, -x.amount FROM {t["dispute"]} x JOIN {t["attempt"]} a ON a.id = x.attempt_id
   WHERE a.connector = %s AND x.status <> 'won'
) u GROUP BY currency"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [psp, psp, psp])
        return {cur: int(total) for cur, total in cursor.fetchall()}


def _settled_total(*, psp: str) -> dict[str, int]:
    """Per currency: the gross that report lines of `psp` settled (posted), as a running total: each
    finished run keeps its own in `summary["settled"]`; a run finished before it did is summed from
    its lines once."""
    from django.db.models import Sum

    from reconciliation.models import ReconciliationRun, ReconRunStatus, StatementLine

    total: dict[str, int] = {}
    legacy: list[str] = []
    runs = ReconciliationRun.objects.filter(psp=psp, status=ReconRunStatus.DONE).values_list("id", "summary")
    for run_id, summary in runs:
        settled = (summary or {}).get("settled")
        if settled is None:
            legacy.append(run_id)
            continue
        for currency, gross in settled.items():
            total[currency] = total.get(currency, 0) + int(gross)
    if legacy:
        rows = (
            StatementLine.objects.filter(run_id__in=legacy).exclude(journal_reference="")
            .values_list("currency").annotate(gross=Sum("gross"))
        )  # fmt: skip
        for currency, gross in rows:
            total[currency] = total.get(currency, 0) + int(gross or 0)
    return total


def _cleared_total(*, psp: str) -> dict[str, int]:
    """Per currency: what finance's resolutions of `psp`'s discrepancies took off the PSP receivable
    (adjustments, write-offs, lines settled as reported): a sum over the few discrepancies that
    cleared something (a partial index holds only those)."""
    from django.db.models import F, Sum

    from reconciliation.models import Discrepancy

    # less what later settlements of the item gave back (their lines' gross is in the settled total)
    rows = (
        Discrepancy.objects.filter(psp=psp).exclude(receivable_cleared=0).order_by()
        .values_list("cleared_currency").annotate(total=Sum(F("receivable_cleared") - F("receivable_recovered")))
    )  # fmt: skip
    return {currency: int(total) for currency, total in rows}


def receivable_check(*, psp: str) -> list[dict]:
    """Per currency: the ledger's PSP receivable of `psp` next to what is captured and not yet
    settled (captures - refunds - disputes not won, less the gross that settled report lines of
    finished runs posted: a running total, not an anti-join over every capture; less what
    finance's resolutions cleared). After a clean run, and after every resolution, the two are
    equal (`ok`)."""
    from ledger import selectors as ledger_selectors
    from ledger.errors import AccountNotFoundError
    from ledger.types import Accounts

    expected = _captured_net(psp=psp)
    for totals in (_settled_total(psp=psp), _cleared_total(psp=psp)):
        for currency, gross in totals.items():
            expected[currency] = expected.get(currency, 0) - gross
    accounts = ledger_selectors.account_list(owner="platform").filter(code=f"psp_receivable:{psp}")
    currencies = sorted(set(expected) | set(accounts.values_list("currency", flat=True)))
    out = []
    for currency in currencies:
        try:
            ledger = ledger_selectors.account_balance(key=Accounts.psp_receivable(psp, currency)).posted
        except AccountNotFoundError:
            ledger = 0
        want = expected.get(currency, 0)
        out.append({"currency": currency, "ledger": ledger, "unsettled": want, "ok": ledger == want})
    return out


def receivable_aging(*, psp: str, now=None) -> list[dict]:
    """What the PSP still owes (unsettled captures net of refunds, chargebacks and won disputes'
    reversals, each less what finance's resolutions cleared of it, and gone once cleared in full:
    the same items as the receivable check, so the buckets add up to it), by age bucket and
    currency: `[{"bucket": "0-1 days", "currency": "EUR", "amount": n, "count": n}, ...]`."""
    import datetime as dt

    from django.db import connection
    from django.utils import timezone

    now = now or timezone.now()
    # age in whole days: bucket lo..hi holds items with now - (hi+1) days < at <= now - lo days
    cases = (
        " ".join(f"WHEN at > %s THEN '{label}'" for lo, hi, label in AGING_BUCKETS if hi is not None)
        + f" ELSE '{AGING_BUCKETS[-1][2]}'"
    )
    bounds = [now - dt.timedelta(days=hi + 1) for _, hi, _ in AGING_BUCKETS if hi is not None]
    from reconciliation.models import Discrepancy

    # what resolutions cleared, per item and direction (a dispute's chargeback, -, and its
    # reversal, +, share the dispute's id; a clearing has its item's sign)
    cleared = (f"SELECT object_id, cleared_currency, receivable_cleared > 0 AS up,"
               " SUM(receivable_cleared - receivable_recovered) AS amount"
               f" FROM {Discrepancy._meta.db_table} WHERE psp = %s AND receivable_cleared <> 0 AND object_id <> ''"
               " GROUP BY object_id, cleared_currency, receivable_cleared > 0")  # fmt: skip
    unsettled = _unsettled_sql()  # its parameters: the PSP, once per item kind
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT bucket, currency, SUM(gross), COUNT(*) FROM (SELECT CASE {cases} END AS bucket, currency, gross"
            f" FROM (SELECT u.currency, u.at, u.gross - COALESCE(c.amount, 0) AS gross FROM ({unsettled}) u"
            f" LEFT JOIN ({cleared}) c ON c.object_id = u.object_id AND c.cleared_currency = u.currency"
            " AND c.up = (u.gross > 0)) v WHERE v.gross <> 0) b GROUP BY bucket, currency",
            [*bounds, *[psp] * unsettled.count("%s"), psp],
        )
        rows = cursor.fetchall()
    order = [lbl for _, _, lbl in AGING_BUCKETS]
    return [
        {"bucket": label, "currency": currency, "amount": int(amount), "count": int(count)}
        for label, currency, amount, count in sorted(rows, key=lambda r: (order.index(r[0]), r[1]))
    ]
