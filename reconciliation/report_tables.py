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
    currencies are never added together)."""
    ids = sorted(r.pk for r in runs)
    rows = (
        StatementLine.objects.filter(run_id__in=ids)
        .values("run_id", "psp", "outcome", "currency")
        .annotate(count=Count("id"), gross=Sum("gross"), fee=Sum("fee"), net=Sum("net"))
        .order_by("run_id", "outcome", "currency")
    )
    yield from rows


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
