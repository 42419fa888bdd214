"""Four eyes on finance's money resolutions of discrepancies (docs/reconciliation.md, "Four eyes").

A resolution that moves money (an adjustment, a line settled as reported, a write-off, a move out
of suspense) above its currency's approval threshold (`discrepancies.approval_threshold`; with what
the same item's other resolutions moved without approval, `discrepancies.moved_alone_on_item`), or
past its user's daily limit (`discrepancies.daily_single_handed_limit`, per currency and UTC day), is
refused by its service (`DiscrepancyNeedsApprovalError`, decided under the PSP's reconciliation
lock and the discrepancy's lock, where the amount is known). `discrepancy_request` is the door
staff use: it runs the action now when it may, and otherwise records a `DiscrepancyApproval`
(pending) with the action's arguments. A *different* user, holding the approve permission and the
action's own permission, with access to the discrepancy's merchant, approves it: the action runs
then, in the approver's transaction, with the asked arguments and under every check of a direct
one, as the user who asked (whose permission it still needs); what no longer fits (the discrepancy
resolved meanwhile, the money moved) fails the approval with the reason and moves nothing. Anyone
who may approve may reject, the asker included.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from payera.core.errors import InvalidRequestError, NotFoundError, PayeraError
from reconciliation.errors import (
    DiscrepancyApprovalPendingError,
    DiscrepancyApprovalStateError,
    DiscrepancyFourEyesError,
    DiscrepancyNeedsApprovalError,
    DiscrepancyPermissionError,
)
from reconciliation.models import Discrepancy, DiscrepancyAction, DiscrepancyApproval, DiscrepancyApprovalStatus
from reconciliation.services.discrepancies import (
    _check,
    may_see,
    resolve_now,
    settle_as_reported_now,
    write_off_now,
)
from reconciliation.services.suspense import reallocate_now

A = DiscrepancyAction
APPROVE_PERMISSION = "approve_discrepancyapproval"
# the permission each action needs (of whoever asks and of whoever approves), its service, and
# the arguments it takes besides the discrepancy, the user and the reason
ACTIONS = {
    A.RESOLVE: ("resolve_discrepancy", resolve_now, ("adjustment", "currency")),
    A.SETTLE_AS_REPORTED: ("resolve_discrepancy", settle_as_reported_now, ()),
    A.WRITE_OFF: ("write_off_discrepancy", write_off_now, ()),
    A.REALLOCATE_SUSPENSE: ("reallocate_suspense_discrepancy", reallocate_now,
                            ("to", "amount", "currency", "object_id", "merchant_id", "move")),
}  # fmt: skip


class DiscrepancyApprovalNotFoundError(NotFoundError):
    default_message = "No such discrepancy approval."


def _action(action: str):
    if action not in ACTIONS:
        raise InvalidRequestError(f"action must be one of {', '.join(ACTIONS)}.", param="action")
    return ACTIONS[action]


def discrepancy_request(
    *, action: str, discrepancy_id: int, user, reason: str, **params
) -> Discrepancy | DiscrepancyApproval:
    """Run `action` on the discrepancy now (its service, in a transaction of its own: the
    discrepancy is answered), or, when it moves more than the approval threshold, ask a second user:
    the pending `DiscrepancyApproval` is answered (the same one again when the same user asks the
    same again). DiscrepancyApprovalPendingError while another resolution of it waits."""
    perm, run, names = _action(action)
    unknown = set(params) - set(names)
    if unknown:
        raise InvalidRequestError(f"{action} takes no {', '.join(sorted(unknown))}.", param=sorted(unknown)[0])
    try:
        with transaction.atomic(durable=True):
            return run(discrepancy_id=discrepancy_id, user=user, reason=reason, approved=False, **params)
    except DiscrepancyNeedsApprovalError as exc:
        return _approval_create(action=action, perm=perm, discrepancy_id=discrepancy_id, user=user, reason=reason,
                                params=params, amount=exc.amount, currency=exc.currency)  # fmt: skip


@transaction.atomic(durable=True)
def _approval_create(
    *, action: str, perm: str, discrepancy_id: int, user, reason: str, params: dict, amount: int, currency: str
) -> DiscrepancyApproval:
    reason = _check(user, perm, reason)
    # not locked: the approval, which locks this row after its own, would wait for us while our
    # insert waits for it (the pending row it decides): the unique index is the guard
    d = Discrepancy.objects.filter(pk=discrepancy_id).only("pk", "merchant_id").first()
    if d is None or not may_see(user, d.merchant_id):
        raise DiscrepancyPermissionError()
    waiting = DiscrepancyApproval.objects.filter(discrepancy_id=d.pk, status=DiscrepancyApprovalStatus.PENDING).first()
    if waiting is not None:
        if (waiting.action, waiting.params, waiting.requested_by_id) == (action, params, user.pk):
            return waiting  # the same page sent again
        raise DiscrepancyApprovalPendingError(param="discrepancy")
    try:
        with transaction.atomic():
            return DiscrepancyApproval.objects.create(
                discrepancy_id=d.pk, merchant_id=d.merchant_id, action=action, params=params, amount=amount,
                currency=currency, reason=reason, requested_by=user,
            )  # fmt: skip
    except IntegrityError:  # another one asked at the same moment
        raise DiscrepancyApprovalPendingError(param="discrepancy") from None


def _decidable(approval_id: int, user, note: str) -> tuple[DiscrepancyApproval, str]:
    approval = DiscrepancyApproval.objects.select_for_update().filter(pk=approval_id).first()
    if approval is None or not may_see(user, approval.merchant_id):
        raise DiscrepancyApprovalNotFoundError(param="approval")
    perm, _, _ = ACTIONS[approval.action]
    if not user.has_perm(f"reconciliation.{APPROVE_PERMISSION}"):
        raise DiscrepancyPermissionError()
    note = _check(user, perm, note)  # the action's permission too, and a real note
    if approval.status != DiscrepancyApprovalStatus.PENDING:
        raise DiscrepancyApprovalStateError(f"This approval is {approval.status}.", param="approval")
    return approval, note


@transaction.atomic(durable=True)
def discrepancy_approval_approve(*, approval_id: int, user, note: str) -> DiscrepancyApproval:
    """A second user approves: the action runs now, as asked (`done`), or fails with the reason
    (`failed`: nothing moved). DiscrepancyFourEyesError for the user who asked."""
    approval, note = _decidable(approval_id, user, note)
    if approval.requested_by_id == user.pk:
        raise DiscrepancyFourEyesError(param="approval")
    merchant_id = approval.params.get("merchant_id") or ""
    if merchant_id and not may_see(user, merchant_id):  # a move to a merchant the approver can not see
        raise DiscrepancyPermissionError()
    _, run, _ = ACTIONS[approval.action]
    at = timezone.now()
    try:
        with transaction.atomic():  # what fails leaves nothing behind, the approval records why
            run(discrepancy_id=approval.discrepancy_id, user=approval.requested_by, reason=approval.reason,
                approved=approval.amount, **approval.params)  # fmt: skip
    except PayeraError as exc:
        approval.mark_failed(by=user, note=note, at=at, failure=f"{exc.code}: {exc.message}")
    else:
        approval.mark_done(by=user, note=note, at=at)
    approval.save()
    return approval


@transaction.atomic(durable=True)
def discrepancy_approval_reject(*, approval_id: int, user, note: str) -> DiscrepancyApproval:
    """Nothing moves; the discrepancy stays as it is (another resolution may be asked)."""
    approval, note = _decidable(approval_id, user, note)
    approval.reject(by=user, note=note, at=timezone.now())
    approval.save()
    return approval
