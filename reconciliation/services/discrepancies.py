"""Finance's work on discrepancies: open -> investigating -> resolved (a reason, and money: a ledger
adjustment, or the reported line settled as reported; finance role only) or written off (a
receivable the PSP will never pay becomes a loss). Each transition is audited (payera.audit
registry on the model) and needs its permission (`reconciliation.<verb>_discrepancy`; roles are
data in payera/staff/roles.py: finance holds `reconciliation.*`).

Every resolution that takes something off the PSP receivable records it on the discrepancy
(`receivable_cleared`, in `cleared_currency`): the receivable check subtracts these, the aging
takes them off the item they name (docs/reconciliation.md, "Resolving with money")."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django_fsm import can_proceed

from ledger import services as ledger_services
from ledger.types import Accounts, JournalKind, PostingLine
from payera.core.errors import InvalidRequestError
from psp_adapters.port import SettlementKind
from reconciliation.errors import DiscrepancyMoneyError, DiscrepancyPermissionError, DiscrepancyStateError
from reconciliation.models import Discrepancy, DiscrepancyStatus, ReconOutcome, StatementLine

# the kinds that name a capture, refund or dispute of Payera's still on the PSP receivable (no
# posted line settled it): an adjustment or a write-off takes (part of) it off
ITEM_KINDS = (ReconOutcome.MISSING_AT_PSP, ReconOutcome.AMOUNT_MISMATCH, ReconOutcome.CURRENCY_MISMATCH)
# the kinds whose report line was not posted and may be booked as the PSP reported it
SETTLE_KINDS = (ReconOutcome.AMOUNT_MISMATCH, ReconOutcome.MISSING_IN_PAYERA, ReconOutcome.DUPLICATE)


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
    """The resolution's adjustment: `amount` takes (part of) a capture, refund or dispute off the
    PSP receivable as PSP cost (fee expense): > 0 a capture or won dispute's reversal the PSP will
    not pay in full, < 0 a refund or chargeback it will not take."""
    return (
        PostingLine(Accounts.psp_fee_expense(currency), amount),
        PostingLine(Accounts.psp_receivable(psp, currency), -amount),
    )


def write_off_lines(*, psp: str, currency: str, amount: int) -> tuple[PostingLine, ...]:
    """A receivable the PSP will never settle, written off: Dr reconciliation differences (a loss;
    a refund's negative amount is a gain) / Cr PSP receivable."""
    return (
        PostingLine(Accounts.reconciliation_differences(currency), amount),
        PostingLine(Accounts.psp_receivable(psp, currency), -amount),
    )


def settle_as_reported_lines(
    *, psp: str, currency: str, gross: int, fee: int, net: int, expected: int | None
) -> tuple[PostingLine, ...]:
    """A report line booked as the PSP reported it: bank cash Dr net, PSP fee expense Dr fee,
    against the PSP receivable Cr `expected` (what Payera had receivable for it) with the rest
    (`expected - gross`) in reconciliation differences (Cr: the PSP paid more, Dr: less); or, when
    Payera expected nothing (`expected` None: a line Payera does not know), suspense Cr gross
    (an unidentified receipt, until explained). Balances when net = gross - fee."""
    legs = [(Accounts.bank_cash(currency), net), (Accounts.psp_fee_expense(currency), fee)]
    if expected is None:
        legs.append((Accounts.suspense(currency), -gross))
    else:
        legs += [(Accounts.psp_receivable(psp, currency), -expected),
                 (Accounts.reconciliation_differences(currency), expected - gross)]  # fmt: skip
    return tuple(PostingLine(account, amount) for account, amount in legs if amount)


def _outstanding(d: Discrepancy) -> tuple[str, int]:
    """(currency, signed minor units) of the capture (+), refund (-), chargeback (-) or won
    dispute's reversal (+) the discrepancy names that is still on the PSP receivable: its gross as
    Payera has it, 0 once a posted report line settled it, less what other discrepancies'
    resolutions cleared of it. (currency, 0) for a discrepancy that names no such item."""
    line = d.line
    currency = line.expected_currency if line is not None and line.expected_currency else d.currency
    amount = d.payera_amount or 0
    if d.kind not in ITEM_KINDS or not amount or not d.object_id:
        return currency, 0
    positive = amount > 0
    same_sign = "gt" if positive else "lt"  # a dispute's chargeback (-) and reversal (+) share its id
    settled = StatementLine.objects.filter(psp=d.psp, object_id=d.object_id, **{f"gross__{same_sign}": 0})
    if settled.exclude(journal_reference="").exists():
        return currency, 0
    cleared = (
        Discrepancy.objects.filter(psp=d.psp, object_id=d.object_id, cleared_currency=currency,
                                   **{f"receivable_cleared__{same_sign}": 0})
        .exclude(pk=d.pk).aggregate(total=Sum("receivable_cleared"))["total"] or 0
    )  # fmt: skip
    left = amount - cleared
    return currency, left if (left > 0) == positive else 0


def _post(*, reference: str, lines, kind: str, d: Discrepancy, user, reason: str) -> None:
    ledger_services.journal_post(
        reference=reference, lines=lines, occurred_at=timezone.now(), kind=kind,
        memo=f"discrepancy {d.pk}: {reason[:200]}",
        metadata={"discrepancy": d.pk, "run": d.run_id, "line": d.line_id, "by": user.get_username()},
    )  # fmt: skip


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
def discrepancy_resolve(
    *, discrepancy_id: int, user, reason: str, adjustment: int = 0, currency: str | None = None
) -> Discrepancy:
    """Resolve with a reason; a non-zero `adjustment` (minor units of `currency`, which must be the
    currency of the item when given) takes that much of the capture, refund or dispute the
    discrepancy names off the PSP receivable as PSP cost: `recon_adjustment:<id>` (idempotent by
    that reference). Only an item still receivable takes one, in its direction and at most what is
    left of it (DiscrepancyMoneyError otherwise): money the PSP reported is settled as reported."""
    reason = _check(user, "resolve_discrepancy", reason)
    if isinstance(adjustment, bool) or not isinstance(adjustment, int):
        raise InvalidRequestError("adjustment must be an integer in minor units.", param="adjustment")
    d = _locked(discrepancy_id)
    if not can_proceed(d.mark_resolved):
        raise DiscrepancyStateError()
    reference, item_currency = "", ""
    if adjustment:
        item_currency, left = _outstanding(d)
        if currency is not None and currency != item_currency:
            raise DiscrepancyMoneyError(f"Discrepancy {d.pk} is in {item_currency}, not {currency}.", param="currency")
        if not left:
            raise DiscrepancyMoneyError(
                f"Discrepancy {d.pk} ({d.get_kind_display()}) names no capture, refund or dispute still on the PSP"
                " receivable: an adjustment has nothing to take off (money the PSP reported: settle as reported).",
                param="adjustment",
            )
        if (adjustment > 0) != (left > 0) or abs(adjustment) > abs(left):
            raise DiscrepancyMoneyError(
                f"The adjustment of discrepancy {d.pk} must lie between 0 and {left} {item_currency} (what is still"
                f" receivable of {d.object_id}).", param="adjustment",
            )  # fmt: skip
        reference = f"recon_adjustment:{d.pk}"
        _post(reference=reference, lines=adjustment_lines(psp=d.psp, currency=item_currency, amount=adjustment),
              kind=JournalKind.ADJUSTMENT, d=d, user=user, reason=reason)  # fmt: skip
    d.mark_resolved(by=user.get_username(), reason=reason, adjustment_reference=reference, at=timezone.now(),
                    receivable_cleared=adjustment, cleared_currency=item_currency)  # fmt: skip
    d.save()
    return d


@transaction.atomic(durable=True)
def discrepancy_settle_as_reported(*, discrepancy_id: int, user, reason: str) -> Discrepancy:
    """Resolve by booking the line as the PSP reported it (`recon_settle:<id>`, see
    `settle_as_reported_lines`): an amount mismatch clears Payera's item off the receivable (the
    gap to reconciliation differences); a line Payera does not know (missing in Payera, or a
    duplicate the PSP really paid) goes to suspense. Needs `resolve_discrepancy`."""
    reason = _check(user, "resolve_discrepancy", reason)
    d = _locked(discrepancy_id)
    if not can_proceed(d.mark_resolved):
        raise DiscrepancyStateError()
    line = d.line
    if d.kind not in SETTLE_KINDS or line is None:
        raise DiscrepancyMoneyError(
            f"Discrepancy {d.pk} is a {d.get_kind_display().lower()}: only an amount mismatch, a line missing in"
            " Payera or a duplicate line is settled as reported."
        )
    if line.journal_reference:
        raise DiscrepancyMoneyError(f"The line of discrepancy {d.pk} is already settled ({line.journal_reference}).")
    if line.net != line.gross - line.fee:
        raise DiscrepancyMoneyError(
            f"The line of discrepancy {d.pk} does not add up (net {line.net} is not gross {line.gross} - fee"
            f" {line.fee}): ask the PSP for a corrected report."
        )
    expected, item_currency = None, ""
    if d.kind == ReconOutcome.AMOUNT_MISMATCH:
        item_currency, left = _outstanding(d)
        if not left or item_currency != line.currency:
            raise DiscrepancyMoneyError(
                f"{d.object_id} is no longer on the PSP receivable (a report line or a resolution settled it):"
                " resolve without money."
            )
        expected = left
    lines = settle_as_reported_lines(psp=d.psp, currency=line.currency, gross=line.gross, fee=line.fee,
                                     net=line.net, expected=expected)  # fmt: skip
    reference = f"recon_settle:{d.pk}" if lines else ""
    if lines:
        _post(reference=reference, lines=lines, kind=JournalKind.SETTLEMENT, d=d, user=user, reason=reason)
    d.mark_resolved(by=user.get_username(), reason=reason, adjustment_reference=reference, at=timezone.now(),
                    receivable_cleared=expected or 0, cleared_currency=item_currency)  # fmt: skip
    d.save()
    return d


@transaction.atomic(durable=True)
def discrepancy_write_off(*, discrepancy_id: int, user, reason: str) -> Discrepancy:
    """Close it: the PSP will never settle it. What the discrepancy names that is still on the PSP
    receivable (a capture, refund or dispute: missing at PSP, amount or currency mismatch) is
    written off to reconciliation differences (`recon_write_off:<id>`); a report line is not booked
    (a duplicate or unknown line the PSP did not pay; a fee difference that was agreed)."""
    reason = _check(user, "write_off_discrepancy", reason)
    d = _locked(discrepancy_id)
    if not can_proceed(d.mark_written_off):
        raise DiscrepancyStateError()
    item_currency, left = _outstanding(d)
    reference = ""
    if left:
        reference = f"recon_write_off:{d.pk}"
        _post(reference=reference, lines=write_off_lines(psp=d.psp, currency=item_currency, amount=left),
              kind=JournalKind.ADJUSTMENT, d=d, user=user, reason=reason)  # fmt: skip
    d.mark_written_off(by=user.get_username(), reason=reason, at=timezone.now(), adjustment_reference=reference,
                       receivable_cleared=left, cleared_currency=item_currency)  # fmt: skip
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
