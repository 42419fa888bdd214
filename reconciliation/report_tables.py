"""The run page's tables as rows, for their CSV exports (reads only): outcomes per run and
currency, and the PSP receivable check and aging of the runs' PSPs (those two are the PSP's state
now, not a run's: each row says when it was read)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from django.db.models import Count, Sum
from django.utils import timezone

from reconciliation.models import ReconciliationRun, StatementLine
from reconciliation.selectors import receivable_aging, receivable_check

OUTCOME_COLUMNS = ("run_id", "psp", "outcome", "currency", "count", "gross", "fee", "net")
RECEIVABLE_COLUMNS = ("psp", "currency", "ledger", "unsettled", "ties_out", "as_of")
AGING_COLUMNS = ("psp", "bucket", "currency", "amount", "count", "as_of")


def run_outcome_rows(runs: Iterable[ReconciliationRun]) -> Iterator[dict]:
    """Per run, outcome and currency: lines, Σ gross, fee and net (minor units of that currency:
    currencies are never added together) — counted as the run page counts them: the lines of a
    report sent again under the outcome their earlier line had (not as duplicates), and "missing
    at PSP" (no line: the discrepancies, Payera's amount as gross, no fee or net known)."""
    from reconciliation.models import Discrepancy, ReconOutcome

    by_run = {r.pk: r for r in runs}
    table: dict[tuple[str, str, str], dict] = {}
    lines = (
        StatementLine.objects.filter(run_id__in=by_run)
        .values("run_id", "psp", "outcome", "currency")
        .annotate(count=Count("id"), gross=Sum("gross"), fee=Sum("fee"), net=Sum("net"))
        .order_by()
    )
    for row in lines:
        table[(row["run_id"], row["outcome"], row["currency"])] = dict(row)
    missing = (
        Discrepancy.objects.filter(run_id__in=by_run, kind=ReconOutcome.MISSING_AT_PSP)
        .values("run_id", "psp", "currency")
        .annotate(count=Count("id"), gross=Sum("payera_amount"))
        .order_by()
    )
    for row in missing:
        table[(row["run_id"], ReconOutcome.MISSING_AT_PSP.value, row["currency"])] = {
            **row, "outcome": ReconOutcome.MISSING_AT_PSP.value, "fee": None, "net": None
        }  # fmt: skip
    for run_id, run in by_run.items():
        for outcome, per in ((run.summary or {}).get("sent_again_lines") or {}).items():
            for currency, moved in per.items():
                dup = table.get((run_id, ReconOutcome.DUPLICATE.value, currency))
                if dup is None:
                    continue
                into = table.setdefault((run_id, outcome, currency), {
                    "run_id": run_id, "psp": run.psp, "outcome": outcome, "currency": currency,
                    "count": 0, "gross": 0, "fee": 0, "net": 0,
                })  # fmt: skip
                for key, value in zip(("count", "gross", "fee", "net"), moved, strict=True):
                    dup[key] -= value
                    into[key] = (into[key] or 0) + value
                if not dup["count"]:
                    del table[(run_id, ReconOutcome.DUPLICATE.value, currency)]
    yield from (table[k] for k in sorted(table))


def _psps(runs: Iterable[ReconciliationRun]) -> list[str]:
    return sorted({r.psp for r in runs})


def run_receivable_rows(runs: Iterable[ReconciliationRun]) -> Iterator[dict]:
    as_of = timezone.now().isoformat()
    for psp in _psps(runs):
        for c in receivable_check(psp=psp):
            yield {
                "psp": psp,
                "currency": c["currency"],
                "ledger": c["ledger"],
                "unsettled": c["unsettled"],
                "ties_out": c["ok"],
                "as_of": as_of,
            }


def run_aging_rows(runs: Iterable[ReconciliationRun]) -> Iterator[dict]:
    now = timezone.now()
    for psp in _psps(runs):
        for a in receivable_aging(psp=psp, now=now):
            yield {
                "psp": psp,
                "bucket": a["bucket"],
                "currency": a["currency"],
                "amount": a["amount"],
                "count": a["count"],
                "as_of": now.isoformat(),
            }
