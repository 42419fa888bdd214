"""Finance's work on discrepancies: open -> investigating -> resolved (a reason, and a ledger
adjustment, finance role only) or written off. Each transition is audited (payera.audit registry
on the model) and needs its permission (`reconciliation.<verb>_discrepancy`; roles are data in
payera/staff/roles.py: finance holds `reconciliation.*`)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from ledger import services as ledger_services
from ledger.types import Accounts, JournalKind, PostingLine
from payera.core.errors import InvalidRequestError
from psp_adapters.port import SettlementKind
from reconciliation.errors import DiscrepancyPermissionError, DiscrepancyStateError
from reconciliation.models import Discrepancy, DiscrepancyStatus, ReconOutcome, StatementLine


def _locked(discrepancy_id: int) -> Discrepancy:
    return Discrepancy.objects.select_for_update().get(pk=discrepancy_id)


def _check(user, perm: str, reason: str) -> str:
    if not (user is not None and user.is_active and user.has_perm(f"reconciliation.{perm}")):
        raise DiscrepancyPermissionError()
    reason = (reason or "").strip()
    if not reason:
        raise InvalidRequestError("A reason is required.", param="reason")
    return reason


def adjustment_lines(*, psp: str, currency: str, amount: int) -> tuple[PostingLine, ...]:
    """The resolution's adjustment: `amount` > 0 takes it off the PSP receivable (the PSP will not
    pay it: a cost, booked as PSP fee expense); < 0 puts it back (the PSP paid more)."""
    return (
        PostingLine(Accounts.psp_fee_expense(currency), amount),
        PostingLine(Accounts.psp_receivable(psp, currency), -amount),
    )


@transaction.atomic(durable=True)
def discrepancy_investigate(*, discrepancy_id: int, user, reason: str) -> Discrepancy:
    reason = _check(user, "investigate_discrepancy", reason)
    d = _locked(discrepancy_id)
    if not can_proceed(d.mark_investigating):
        raise DiscrepancyStateError()
    d.mark_investigating(by=user.get_username(), reason=reason)
    d.save()
    return d


@transaction.atomic(durable=True)
def discrepancy_resolve(*, discrepancy_id: int, user, reason: str, adjustment: int = 0) -> Discrepancy:
    """Resolve with a reason; a non-zero `adjustment` (minor units of the discrepancy's currency)
    posts `recon_adjustment:<id>` (idempotent by that reference)."""
    reason = _check(user, "resolve_discrepancy", reason)
    if isinstance(adjustment, bool) or not isinstance(adjustment, int):
        raise InvalidRequestError("adjustment must be an integer in minor units.", param="adjustment")
    d = _locked(discrepancy_id)
    if not can_proceed(d.mark_resolved):
        raise DiscrepancyStateError()
    reference = ""
    if adjustment:
        reference = f"recon_adjustment:{d.pk}"
        ledger_services.journal_post(
            reference=reference, lines=adjustment_lines(psp=d.psp, currency=d.currency, amount=adjustment),
            occurred_at=timezone.now(), kind=JournalKind.ADJUSTMENT, memo=f"discrepancy {d.pk}: {reason[:200]}",
            metadata={"discrepancy": d.pk, "run": d.run_id, "by": user.get_username()},
        )  # fmt: skip
    d.mark_resolved(by=user.get_username(), reason=reason, adjustment_reference=reference, at=timezone.now())
    d.save()
    return d


@transaction.atomic(durable=True)
def discrepancy_write_off(*, discrepancy_id: int, user, reason: str) -> Discrepancy:
    reason = _check(user, "write_off_discrepancy", reason)
    d = _locked(discrepancy_id)
    if not can_proceed(d.mark_written_off):
        raise DiscrepancyStateError()
    d.mark_written_off(by=user.get_username(), reason=reason, at=timezone.now())
    d.save()
    return d


def discrepancies_settled_resolve(*, run_id: str, psp: str) -> int:
    """A later report settles what an earlier one lacked: each open or investigating "missing at
    PSP" discrepancy whose capture, refund or won dispute a posted line of run `run_id` names (a
    reversal line for a dispute) is resolved through
    the state machine (audited), by `reconciliation:<run>`, with the line as the reason, and no
    adjustment (the line's settlement journal moved the money). Runs inside the import's
    transaction; returns how many it resolved."""
    from django.db.models import Exists, OuterRef

    # a chargeback line names its dispute too, but only the reversal line settles a won dispute's
    # missing reversal (no "missing at PSP" is ever opened for a chargeback)
    lines = StatementLine.objects.filter(run_id=run_id, psp=psp).exclude(journal_reference="").exclude(
        kind=SettlementKind.CHARGEBACK
    )
    settled = lines.filter(object_id=OuterRef("object_id"))
    waiting = (
        Discrepancy.objects.select_for_update()
        .filter(psp=psp, kind=ReconOutcome.MISSING_AT_PSP, status__in=[DiscrepancyStatus.OPEN,
                DiscrepancyStatus.INVESTIGATING])
        .filter(Exists(settled))
        .order_by("pk")
    )  # fmt: skip
    by = f"reconciliation:{run_id}"
    now = timezone.now()
    resolved = 0
    for d in waiting:
        line = lines.filter(object_id=d.object_id).order_by("line_number").first()
        if line is None or not can_proceed(d.mark_resolved):
            continue
        reason = (f"settled by a later report: run {run_id} line {line.line_number} ({line.outcome}, gross"
                  f" {line.gross} {line.currency}, journal {line.journal_reference})")  # fmt: skip
        d.mark_resolved(by=by, reason=reason, adjustment_reference="", at=now)
        d.save()
        resolved += 1
    return resolved
