"""The late heal: "missing in Payera" report lines asked about again, after their import
(docs/reconciliation.md, "Late heal").

At import time a line Payera cannot explain is inquired once (reconcile.py, `_heal`); when the PSP
was down, had not decided the dispute yet, or its webhook was still lost, the line stays "missing
in Payera" and a discrepancy is opened. This service takes the open or investigating "missing in
Payera" discrepancies of runs younger than `RECONCILIATION_REHEAL_MAX_AGE_DAYS` (at most `limit`,
oldest first) and:

1. asks the PSP again exactly as the import's heal does (`heal_inquire`: one inquiry per attempt,
   one per dispute, never per line), outside any transaction;
2. per PSP, in one transaction that holds the PSP's reconciliation lock (an import's finish or
   another late heal waits) and the discrepancies' and lines' rows: matches those lines again with
   the import's matching SQL (`rematch_sql`, per line journal);
3. a line that now matches (matched, or a fee difference: the money arrived) posts its settlement
   once, `psp_settlement_line:<run>:<line number>`, with the import's accounts (`settlement_lines`:
   bank cash net + PSP fee expense fee against the PSP receivable gross; an item finance had already
   cleared is credited only what is still owed, the rest given back to the accounts the clearing
   debited: `discrepancies.lines_recover`); its run's settled total (the receivable check's running
   total) grows by its gross;
4. its discrepancy is resolved through the state machine (audited) by `reconciliation:reheal`,
   the reason naming the line and the journal, no adjustment. A line that now has another outcome
   (a fee difference, an amount or currency mismatch) keeps a discrepancy of that kind: the
   "missing in Payera" one is resolved (the reason names the new one) and a new one of the right
   kind is opened for the line, as the import would have opened it. A "missing at PSP" that an
   earlier report opened for the item the line now settles is resolved too.

Lines still unexplained stay as they are (their discrepancy untouched). Running it twice, or two at
once, posts each line once: the line is claimed under its row lock and only while it is still
missing, and its journal has a business reference of its own.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_fsm import can_proceed

from ledger import services as ledger_services
from ledger.types import JournalKind
from reconciliation.errors import DiscrepancyPermissionError
from reconciliation.models import (
    Discrepancy,
    DiscrepancyStatus,
    ReconciliationRun,
    ReconOutcome,
    ReconRunStatus,
    StatementLine,
)
from reconciliation.services.discrepancies import (
    discrepancies_settled_resolve,
    lines_recover,
    may_see,
    recovered_metadata,
)
from reconciliation.services.locks import reconcile_psp_lock
from reconciliation.services.reconcile import (
    POSTED_OUTCOMES,
    discrepancies_from_lines_sql,
    heal_inquire,
    rematch_sql,
    settlement_lines,
)

logger = logging.getLogger("payera.reconciliation")

BY = "reconciliation:reheal"
DEFAULT_MAX_AGE_DAYS = 30
DEFAULT_LIMIT = 500
CHUNK = 100  # lines per write transaction
WAITING = (DiscrepancyStatus.OPEN, DiscrepancyStatus.INVESTIGATING)


@dataclass(frozen=True, slots=True)
class RehealResult:
    lines: int  # "missing in Payera" lines looked at
    asked: int  # inquiries made at the PSPs (attempts and disputes)
    healed: int  # lines that now match: settlement posted, discrepancy resolved
    reclassified: int  # lines with another outcome now: their discrepancy is of that kind
    still_open: int  # lines still unexplained (their discrepancy untouched)

    def as_dict(self) -> dict[str, int]:
        return {"lines": self.lines, "asked": self.asked, "healed": self.healed,
                "reclassified": self.reclassified, "still_open": self.still_open}  # fmt: skip


def waiting_discrepancies(*, max_age_days: int | None = None):
    """The open or investigating "missing in Payera" discrepancies of a line, of finished runs
    younger than `max_age_days` (default RECONCILIATION_REHEAL_MAX_AGE_DAYS), oldest first."""
    days = max_age_days if max_age_days is not None else _setting("RECONCILIATION_REHEAL_MAX_AGE_DAYS",
                                                                  DEFAULT_MAX_AGE_DAYS)
    since = timezone.now() - dt.timedelta(days=days)
    return Discrepancy.objects.filter(
        kind=ReconOutcome.MISSING_IN_PAYERA, status__in=WAITING, line__isnull=False,
        run__status=ReconRunStatus.DONE, run__created_at__gte=since,
    ).order_by("pk")  # fmt: skip


def reconcile_reheal(
    *, max_age_days: int | None = None, limit: int | None = None, discrepancy_ids: list[int] | None = None
) -> RehealResult:
    """Ask the PSPs again about the waiting "missing in Payera" lines and settle those that now
    match (module docstring). `discrepancy_ids`: only these (the back office's "re-check with the
    PSP"; still only waiting "missing in Payera" ones). Never inside a transaction (PSP calls)."""
    if connection.in_atomic_block:
        raise RuntimeError("reconcile_reheal calls the PSPs: not inside a transaction")
    limit = limit if limit is not None else _setting("RECONCILIATION_REHEAL_LIMIT", DEFAULT_LIMIT)
    waiting = waiting_discrepancies(max_age_days=max_age_days)
    if discrepancy_ids is not None:
        waiting = waiting.filter(pk__in=discrepancy_ids)
    picked = list(waiting.values_list("line_id", "line__psp")[:limit])
    if not picked:
        return RehealResult(0, 0, 0, 0, 0)
    line_ids = sorted({line_id for line_id, _ in picked})
    asked = 0
    for start in range(0, len(line_ids), CHUNK):
        chunk = line_ids[start : start + CHUNK]
        asked += heal_inquire(f"s.id IN ({', '.join(['%s'] * len(chunk))})", chunk)
    healed = reclassified = 0
    by_psp: dict[str, list[int]] = {}
    for line_id, psp in picked:
        by_psp.setdefault(psp, []).append(line_id)
    for psp in sorted(by_psp):
        ids = sorted(set(by_psp[psp]))
        for start in range(0, len(ids), CHUNK):
            h, r = _settle(psp=psp, line_ids=ids[start : start + CHUNK])
            healed, reclassified = healed + h, reclassified + r
    still = StatementLine.objects.filter(pk__in=line_ids, outcome=ReconOutcome.MISSING_IN_PAYERA).count()
    result = RehealResult(len(line_ids), asked, healed, reclassified, still)
    logger.info("reconciliation late heal: %s", result.as_dict())
    return result


def discrepancy_recheck(*, discrepancy_ids: list[int], user) -> RehealResult:
    """The back office's "re-check with the PSP": the late heal of these discrepancies only (the
    waiting "missing in Payera" ones among them), by a user who may resolve discrepancies (the
    finance role) and see each one's merchant (a line tied to no merchant: all-merchant staff
    only); any other is refused whole (DiscrepancyPermissionError), nothing asked or posted."""
    if not (user is not None and user.is_active and user.has_perm("reconciliation.resolve_discrepancy")):
        raise DiscrepancyPermissionError()
    merchants = set(Discrepancy.objects.filter(pk__in=list(discrepancy_ids)).values_list("merchant_id", flat=True))
    if not all(may_see(user, merchant_id) for merchant_id in merchants):
        raise DiscrepancyPermissionError()
    result = reconcile_reheal(discrepancy_ids=list(discrepancy_ids), max_age_days=_ANY_AGE)
    logger.info("late heal of %s discrepancies asked by %s: %s", len(discrepancy_ids), user.get_username(),
                result.as_dict())
    return result


_ANY_AGE = 36500  # a discrepancy finance picks by hand is asked about whatever its age


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


@transaction.atomic(durable=True)
def _settle(*, psp: str, line_ids: list[int]) -> tuple[int, int]:
    """One PSP's lines: claimed, matched again, posted and their discrepancies moved (module
    docstring, 2-4). Returns (healed, reclassified)."""
    reconcile_psp_lock(psp)
    # the claim: discrepancies still waiting (finance may have resolved one meanwhile: its line
    # stays as it is), then their lines still missing, both locked in id order
    discrepancies = {
        d.line_id: d for d in Discrepancy.objects.select_for_update().filter(
            line_id__in=line_ids, kind=ReconOutcome.MISSING_IN_PAYERA, status__in=WAITING,
        ).order_by("pk")
    }  # fmt: skip
    claimed = list(
        StatementLine.objects.select_for_update().filter(
            pk__in=sorted(discrepancies), psp=psp, outcome=ReconOutcome.MISSING_IN_PAYERA
        ).order_by("pk").values_list("pk", flat=True)
    )  # fmt: skip
    if not claimed:
        return 0, 0
    marks = ", ".join(["%s"] * len(claimed))
    with connection.cursor() as cursor:
        cursor.execute(rematch_sql(f"id IN ({marks})", per_line=True), [*claimed, psp])
    changed = list(
        StatementLine.objects.filter(pk__in=claimed).exclude(outcome=ReconOutcome.MISSING_IN_PAYERA).order_by("pk")
    )
    if not changed:
        return 0, 0
    at = timezone.now()
    # items finance had already cleared that these lines settle: given back, not credited twice
    posting = [line.pk for line in changed if line.outcome in POSTED_OUTCOMES]
    recovered = (
        lines_recover(psp=psp, where=f"l.id IN ({', '.join(['%s'] * len(posting))})", params=posting)
        if posting else {}
    )  # fmt: skip
    settled: dict[str, dict[str, int]] = {}  # run -> currency -> gross posted now
    posted: dict[str, int] = {}  # run -> lines posted now
    healed = reclassified = 0
    for line in changed:
        journal = ""
        if line.outcome in POSTED_OUTCOMES:
            journal = line.journal_reference
            given_back = recovered.get(journal)
            legs = settlement_lines(psp=psp, currency=line.currency, gross=line.gross, net=line.net,
                                    recovered=given_back)  # fmt: skip
            if legs:
                metadata = {"reconciliation_run": line.run_id, "line": line.line_number, "psp": psp,
                            "payout_batch": line.payout_batch_id, "lines": 1, "late_heal": True}  # fmt: skip
                if given_back:
                    metadata["recovered"] = recovered_metadata(given_back)
                ledger_services.journal_post(
                    reference=journal, lines=legs, occurred_at=at, kind=JournalKind.SETTLEMENT,
                    memo=f"{psp} settlement {line.payout_batch_id or '-'} line {line.line_number} (late heal)",
                    metadata=metadata,
                )  # fmt: skip
            per_run = settled.setdefault(line.run_id, {})
            per_run[line.currency] = per_run.get(line.currency, 0) + line.gross
            posted[line.run_id] = posted.get(line.run_id, 0) + 1
        d = discrepancies[line.pk]
        what = f"run {line.run_id} line {line.line_number} ({line.kind}, gross {line.gross} {line.currency})"
        if line.outcome == ReconOutcome.MATCHED:
            reason = f"healed later: {what} now matches {line.object_id}; settled in journal {journal}"
            healed += 1
        else:
            new = _open(line, at=at)
            reason = f"healed later: {what} is now {line.outcome} (discrepancy {new.pk})"
            if journal:
                reason += f"; settled in journal {journal}"
                healed += 1
            else:
                reclassified += 1
        if can_proceed(d.mark_resolved):
            d.mark_resolved(by=BY, reason=reason, adjustment_reference="", at=at)
            d.save()
    _runs_settled(psp, settled, posted)
    return healed, reclassified


def _open(line: StatementLine, *, at) -> Discrepancy:
    """The discrepancy the import would have opened for the line's outcome: by the import's own
    statement (reconcile.py, `discrepancies_from_lines_sql`), for this line only."""
    with connection.cursor() as cursor:
        cursor.execute(discrepancies_from_lines_sql("s.id = %s"), [at, at, line.pk, line.pk])
    return Discrepancy.objects.filter(line=line, kind=line.outcome).latest("pk")


def _runs_settled(psp: str, settled: dict[str, dict[str, int]], posted: dict[str, int]) -> None:
    """The runs whose lines were settled now: their settled totals (the receivable check's running
    total) grow by what was posted, an earlier report's "missing at PSP" for what the lines settle
    is resolved, and the receivable check is taken again."""
    if not settled:
        return
    from reconciliation.selectors import receivable_check

    runs = list(ReconciliationRun.objects.select_for_update().filter(pk__in=sorted(settled)).order_by("pk"))
    for run in runs:
        summary = dict(run.summary or {})
        if summary.get("settled") is not None:  # (a run without it is summed from its lines)
            total = dict(summary["settled"])
            for currency, gross in settled[run.pk].items():
                total[currency] = int(total.get(currency, 0)) + gross
            summary["settled"] = {c: total[c] for c in sorted(total)}
        summary["late_healed"] = int(summary.get("late_healed", 0)) + posted[run.pk]
        run.summary = summary
        run.save(update_fields=["summary"])
        discrepancies_settled_resolve(run_id=run.pk, psp=psp)
    check = receivable_check(psp=psp)
    for run in runs:
        run.summary["receivable"] = check
        run.save(update_fields=["summary"])
