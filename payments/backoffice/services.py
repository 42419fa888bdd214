"""Staff actions on payments. Each checks the staff member's permission and merchant access
itself (the admin checks them too: a hand-made request gets no further), calls the payments
services (the only writers of payments) and never sets a status. A PSP call is never made inside
a transaction: approving a refund commits the decision first, then `refund_create` runs (its own
start -> PSP call -> record steps), then the outcome is recorded on the approval."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django_fsm import can_proceed

from payera.backoffice.services import staff_reason_check
from payera.core.errors import (
    InvalidRequestError,
    NotFoundError,
    PayeraError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from payera.core.masking import mask_account_numbers
from payera.staff.access import staff_can_access_merchant
from payments.backoffice.models import AP, RefundApproval
from payments.bookings_models import BS, Booking
from payments.locks import payment_lock
from payments.models import PS, OperationStatus, Payment, Refund
from payments.services import payment_cancel, refund_create
from payments.services.bookings import BookingRefundNeedsApprovalError, booking_cancel, booking_lock
from payments.services.common import PaymentInProgressError, PaymentStateError, now
from payments.services.recovery import payment_recover

REFUND_PERMISSION = "payments.refund_payment"
APPROVE_PERMISSION = "payments_backoffice.approve_refundapproval"
CANCEL_PERMISSION = "payments.cancel_payment"
RECOVER_PERMISSION = "payments.recover_payment"
BOOKING_CANCEL_PERMISSION = "payments.cancel_booking"
BOOKING_REFUND_PERMISSION = "payments.refund_booking"

logger = logging.getLogger("payera.payments")


class StaffPermissionError(PermissionDeniedError):
    default_message = "Your back-office role does not allow this action."


class FourEyesError(PermissionDeniedError):
    code = "four_eyes_required"
    default_message = "A refund you asked for must be approved by another finance user."


class RefundApprovalNotFoundError(NotFoundError):
    default_message = "No such refund approval."


class RefundApprovalStateError(PaymentStateError):
    code = "refund_approval_decided"
    default_message = "This refund approval has already been decided."


class RefundApprovalAlreadySentError(RefundApprovalStateError):
    default_message = "This approved refund has already been sent."


class StaffRefundAmountError(InvalidRequestError):
    code = "amount_too_large"


class StaffRefundNeedsApprovalError(PermissionDeniedError):
    """Raised inside `refund_create`'s transaction (rolling the refund back before any PSP call):
    this refund would take what staff refunded of the payment without an approval above the
    merchant's threshold. `staff_refund_request` turns it into an approval request."""

    code = "four_eyes_required"
    default_message = "This refund takes the payment's refunds above the approval threshold."


def _actor(user) -> str:
    return f"staff:{user.pk}"


def _require(user, perm: str) -> None:
    if not (user.is_active and user.is_staff and user.has_perm(perm)):
        raise StaffPermissionError()


def _payment_for_staff(user, payment_id: str) -> Payment:
    payment = Payment.objects.select_related("merchant").filter(pk=payment_id).first()
    if payment is None or not staff_can_access_merchant(user, payment.merchant_id):
        raise NotFoundError("No such payment.", param="payment")
    return payment


def refundable_left(payment: Payment, *, besides: RefundApproval | None = None) -> int:
    """What may still be refunded: captured, minus live refunds, minus what disputes (chargebacks,
    returned debits) took back, as `refund_create` counts it when the refund is sent, minus
    approvals waiting (but `besides`, the approval being decided). Never below zero."""
    refunds = payment.refunds.exclude(status=OperationStatus.FAILED).aggregate(s=Sum("amount"))["s"] or 0
    # an approval whose refund exists (bound, not yet recorded as sent) is counted by its refund
    waiting = payment.refund_approvals.filter(status__in=[AP.PENDING, AP.APPROVED], refund__isnull=True)
    if besides is not None:
        waiting = waiting.exclude(pk=besides.pk)
    waiting_sum = waiting.aggregate(s=Sum("amount"))["s"] or 0
    return max(0, payment.amount_captured - refunds - payment.amount_disputed - waiting_sum)


def _left_error(payment: Payment, amount: int, left: int) -> StaffRefundAmountError:
    disputed = f", {payment.amount_disputed} disputed" if payment.amount_disputed else ""
    return StaffRefundAmountError(
        f"Refund amount ({amount}) is greater than what is left to refund ({left}), counting refunds waiting "
        f"for approval and disputed money{disputed}.", param="amount")


@dataclass(frozen=True, slots=True)
class StaffRefundResult:
    refund: Refund | None = None  # sent now (below the threshold)
    approval: RefundApproval | None = None  # waits for a second finance user


def _within_threshold(threshold: int):
    """`refund_create`'s `on_begin` for a staff refund sent without an approval: under the
    payment's lock, the payment's refunds that no second finance user approved (live ones, this
    one included) must stay at or below the threshold, so a large refund split into small ones
    still needs four eyes. Refunds sent through an approval (bound to it) are not counted."""

    def check(refund: Refund) -> None:
        approved = RefundApproval.objects.filter(payment_id=refund.payment_id, refund__isnull=False).values(
            "refund_id")
        before = (Refund.objects.filter(payment_id=refund.payment_id).exclude(pk=refund.pk)
                  .exclude(status=OperationStatus.FAILED).exclude(pk__in=approved)
                  .aggregate(s=Sum("amount"))["s"] or 0)
        if before + refund.amount > threshold:
            raise StaffRefundNeedsApprovalError(param="amount")

    return check


def staff_refund_request(*, user, payment_id: str, amount: int, reason: str) -> StaffRefundResult:
    """A finance user refunds `amount` of a payment. It goes to the PSP now while the payment's
    refunds made without an approval, this one included, stay at or below the merchant's threshold
    of the payment's currency (`Merchant.refund_approval_threshold_for`); above it (one large
    refund, or the small one that takes the total past it), it waits for a second finance user's
    approval. The total is counted under the payment's lock (`refund_create`), so two such refunds
    racing each other count each other (or the second is refused as busy while the first is at
    the PSP)."""
    _require(user, REFUND_PERMISSION)
    reason = staff_reason_check(reason)
    payment = _payment_for_staff(user, payment_id)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidRequestError("amount must be a positive integer (minor units).", param="amount")
    threshold = payment.merchant.refund_approval_threshold_for(payment.currency)
    if amount > threshold:
        return StaffRefundResult(approval=_approval_create(user=user, payment_id=payment.id, amount=amount,
                                                           reason=reason))
    left = refundable_left(payment)
    if amount > left:
        raise _left_error(payment, amount, left)
    try:
        refund = refund_create(merchant=payment.merchant, payment_id=payment.id, amount=amount, actor=_actor(user),
                               on_begin=_within_threshold(threshold))
    except StaffRefundNeedsApprovalError:
        return StaffRefundResult(approval=_approval_create(user=user, payment_id=payment.id, amount=amount,
                                                           reason=reason))
    return StaffRefundResult(refund=refund)


@transaction.atomic(durable=True)
def _approval_create(*, user, payment_id: str, amount: int, reason: str, booking_id: str | None = None
                     ) -> RefundApproval:
    """A refund waiting for a second finance user. With `booking_id`: the cancel of that confirmed
    booking, refunding its whole escrow (`amount` is then what it captured, read under its lock)."""
    if booking_id is None:
        payment = payment_lock(payment_id)  # serializes "what is left" with other requests and refunds
    else:
        payment, booking = booking_lock(booking_id)  # the payment, then the booking
        if booking.status != BS.CONFIRMED:
            raise PaymentStateError(f"A booking in status {booking.status} has no escrow to refund.", param="booking")
        amount = booking.amount_captured
    if payment.status != PS.SUCCEEDED or payment.amount_captured <= 0:
        raise PaymentStateError("Only a captured payment can be refunded.", param="payment")
    left = refundable_left(payment)
    if amount > left:
        raise _left_error(payment, amount, left)
    return RefundApproval.objects.create(
        merchant_id=payment.merchant_id, payment=payment, booking_id=booking_id, amount=amount,
        currency=payment.currency, reason=mask_account_numbers(reason.strip()), requested_by=user,
    )


def _approval_for_staff(user, approval_id: str) -> RefundApproval:
    approval = RefundApproval.objects.filter(pk=approval_id).first()
    if approval is None or not staff_can_access_merchant(user, approval.merchant_id):
        raise RefundApprovalNotFoundError(param="approval")
    return approval


@transaction.atomic(durable=True)
def _approval_decide(*, user, approval_id: str, verb: str, note: str) -> RefundApproval:
    payment = None
    if verb == "approve":  # the payment first (as refund_create, which binds the approval), then the approval
        payment = payment_lock(RefundApproval.objects.values_list("payment_id", flat=True).get(pk=approval_id))
    approval = RefundApproval.objects.select_for_update().get(pk=approval_id)
    if verb == "approve" and approval.requested_by_id == user.pk:
        raise FourEyesError(param="approval")
    if not can_proceed(getattr(approval, verb)):
        raise RefundApprovalStateError(f"This refund approval is {approval.status}.", param="approval")
    if payment is not None:
        _approval_fits(payment, approval)
    getattr(approval, verb)(by=user, note=mask_account_numbers(note), at=now())  # as the request's reason
    approval.save()
    return approval


def _approval_fits(payment: Payment, approval: RefundApproval) -> None:
    """Under the payment's lock: approving sends the refund at once, so what the send will allow
    must still hold (a dispute or another refund since the request may have taken the money):
    else the approval is refused and stays pending (for a reject), nothing is sent. A booking
    cancel whose escrow refund a crashed cancel already made is let through: sending takes that
    refund over, it refunds nothing more (payments.services.bookings)."""
    left = refundable_left(payment, besides=approval)
    if approval.booking_id and not payment.amount_disputed and payment.refunds.exclude(
            status=OperationStatus.FAILED).filter(amount=approval.amount).exists():
        return
    if approval.amount > left:
        raise _left_error(payment, approval.amount, left)


@transaction.atomic(durable=True)
def _approval_record(*, approval_id: str, refund_id: str = "", failure: str = "") -> RefundApproval:
    """Record how sending ended. Idempotent: a decided send stays as it is, and a refund already
    bound to the approval (by `_approval_bind`) is what it was sent as, whoever asks."""
    approval = RefundApproval.objects.select_for_update().get(pk=approval_id)
    if approval.status != AP.APPROVED:
        return approval
    refused = _refund_refused(approval, failure=failure)
    if refused:  # sent only when the refund went out: it failed, nothing moved
        approval.mark_failed(failure=refused)
    elif approval.refund_id or refund_id:
        approval.mark_sent(refund_id=approval.refund_id or refund_id)
    else:
        approval.mark_failed(failure=failure)
    approval.save()
    return approval


def _refund_refused(approval: RefundApproval, *, failure: str) -> str:
    """An approval whose bound refund failed (the PSP refused it, or it never reached the PSP):
    nothing was refunded, so the approval ends `failed`, saying why: for a booking cancel (the
    booking stayed confirmed, its escrow whole) the cancel's error when this request saw it, else
    the refund's failure code, and when the PSP refused it after the cancel was recorded, the
    booking's closed status. Empty when the refund did not fail: the approval is `sent` and the
    refund, pending or succeeded, says the rest."""
    if not approval.refund_id:
        return ""
    code = Refund.objects.filter(pk=approval.refund_id, status=OperationStatus.FAILED).values_list(
        "failure_code", flat=True).first()
    if code is None:
        return ""
    if approval.booking_id:
        if failure:
            return failure
        status = Booking.objects.filter(pk=approval.booking_id).values_list("status", flat=True).first()
        if status != BS.CONFIRMED:
            # the PSP took it (the cancel was recorded) and refused it later: the booking stays
            # closed, what its escrow held went to pending (booking_sync.booking_escrow_refund_failed)
            return (f"booking_refund_failed: the refund {approval.refund_id} out of escrow failed "
                    f"({code or 'refused'}) after the booking was {status}: nothing was refunded.")
        return f"booking_refund_failed: the refund out of escrow failed ({code or 'refused'}): " \
               "the booking is unchanged."
    return f"refund_failed: the refund {approval.refund_id} failed ({code or 'refused'}): nothing was refunded."


def _approval_bind(approval_id: str):
    """`refund_create`'s `on_begin`: binds the new refund to the approval inside the transaction
    that inserts it, once. A second sender (a resume racing the approver's request) finds the
    approval bound and is refused, which rolls its refund back before any PSP call: one approval
    can never make two refunds."""

    def bind(refund: Refund) -> None:
        bound = RefundApproval.objects.filter(pk=approval_id, status=AP.APPROVED, refund__isnull=True).update(
            refund=refund)
        if not bound:
            raise RefundApprovalAlreadySentError(param="approval")

    return bind


# Refusals that may pass: the payment's one in-flight mutation is busy, or a backing service is
# down. The approval stays `approved` and `refund_approvals_resume` sends it later.
_TRANSIENT = (PaymentInProgressError, ServiceUnavailableError)


def _approval_send(*, approval_id: str, actor: str) -> RefundApproval:
    """Send an approved refund to the PSP (outside any transaction: `refund_create` commits the
    refund, bound to the approval, before its PSP call) and record the outcome on the approval."""
    approval = RefundApproval.objects.select_related("payment__merchant").get(pk=approval_id)
    if approval.status != AP.APPROVED:
        return approval
    if approval.booking_id:
        return _approval_send_booking_cancel(approval=approval, actor=actor)
    if approval.refund_id:  # sent before (the process died before recording it)
        return _approval_record(approval_id=approval.id)
    payment = approval.payment
    try:
        refund = refund_create(merchant=payment.merchant, payment_id=payment.id, amount=approval.amount,
                               actor=actor, on_begin=_approval_bind(approval.id))
    except RefundApprovalAlreadySentError:
        return _approval_record(approval_id=approval.id)
    except _TRANSIENT as exc:
        logger.warning("refund approval %s not sent yet (%s); it is retried", approval.id, exc.code)
        return RefundApproval.objects.get(pk=approval.id)
    except PayeraError as exc:
        return _approval_record(approval_id=approval.id, failure=f"{exc.code}: {exc.message}")
    return _approval_record(approval_id=approval.id, refund_id=refund.id)


def _approval_send_booking_cancel(*, approval: RefundApproval, actor: str) -> RefundApproval:
    """Cancel the approved booking: its escrow refund is bound to the approval when it is inserted
    (before the PSP call). Sent again after a crash, the cancel takes over the refund it left (the
    booking makes one escrow refund, `payments.services.bookings`) and records the booking; a
    booking no longer confirmed (completed, disputed or canceled by the merchant meanwhile) is
    not refunded: the approval fails, saying why."""
    try:
        booking = booking_cancel(merchant=approval.payment.merchant, booking_id=approval.booking_id, actor=actor,
                                 on_refund_begin=_approval_bind(approval.id))
    except RefundApprovalAlreadySentError:
        return _approval_record(approval_id=approval.id)
    except _TRANSIENT as exc:
        logger.warning("refund approval %s (booking cancel) not sent yet (%s); it is retried", approval.id, exc.code)
        return RefundApproval.objects.get(pk=approval.id)
    except PayeraError as exc:
        return _approval_record(approval_id=approval.id, failure=f"{exc.code}: {exc.message}")
    return _approval_record(approval_id=approval.id, refund_id=booking.refund_id or "",
                            failure="the booking was not canceled")


def refund_approval_approve(*, user, approval_id: str, note: str = "") -> RefundApproval:
    """A second finance user approves: the decision commits, then the refund goes to the PSP.
    If the process dies in between, or the payment was busy, the approval stays `approved` and
    `refund_approvals_resume` (beat) sends it; nobody can approve it twice, and it can never make
    two refunds (`_approval_bind`)."""
    _require(user, REFUND_PERMISSION)
    _require(user, APPROVE_PERMISSION)
    approval = _approval_for_staff(user, approval_id)
    if approval.booking_id:  # approving cancels the booking, refunding its escrow
        _require(user, BOOKING_REFUND_PERMISSION)
    approval = _approval_decide(user=user, approval_id=approval.id, verb="approve", note=note)
    return _approval_send(approval_id=approval.id, actor=_actor(user))


def refund_approvals_resume(*, grace_seconds: float | None = None, limit: int = 200) -> dict[str, int]:
    """Finish approvals whose sending did not end: the approver's process died between the
    decision and the PSP call (no refund yet: send it now), or after the refund was started (a
    refund is bound: record it; the refund's own outcome is recovery's). Approvals decided within
    the grace period are left alone: their request may be running right now. Then a `sent` plain
    refund approval whose refund failed since (the PSP refused it after accepting it) ends
    `failed`, counted with those, as is a `sent` booking-cancel approval whose escrow refund failed
    since (the booking stays canceled, its escrow released to pending)."""
    if grace_seconds is None:
        grace_seconds = getattr(settings, "PAYMENTS_STARTED_GRACE_SECONDS", 60)
    cutoff = now() - dt.timedelta(seconds=grace_seconds)
    counts = {"approvals": 0, "sent": 0, "failed": 0, "waiting": 0}
    due = RefundApproval.objects.filter(status=AP.APPROVED, decided_at__lte=cutoff).order_by("decided_at")
    for approval_id, decided_by_id in due.values_list("pk", "decided_by_id")[:limit]:
        counts["approvals"] += 1
        approval = _approval_send(approval_id=approval_id, actor=f"staff:{decided_by_id}")
        counts[{AP.SENT: "sent", AP.FAILED: "failed"}.get(approval.status, "waiting")] += 1
    # refunds the PSP accepted (pending: the approval `sent`) and refused later, plain ones and
    # booking cancels' escrow refunds alike
    refused = RefundApproval.objects.filter(status=AP.SENT, refund__status=OperationStatus.FAILED)
    for approval_id in refused.values_list("pk", flat=True)[:limit]:
        if _approval_refund_failed(approval_id=approval_id).status == AP.FAILED:
            counts["approvals"] += 1
            counts["failed"] += 1
    # and back: a refund failed only for not being known at the PSP yet, then made by it (recorded
    # `succeeded` by `mark_found`): the approval did refund, it is `sent` again
    found = RefundApproval.objects.filter(status=AP.FAILED, refund__status=OperationStatus.SUCCEEDED)
    for approval_id in found.values_list("pk", flat=True)[:limit]:
        if _approval_refund_found(approval_id=approval_id).status == AP.SENT:
            counts["approvals"] += 1
            counts["sent"] += 1
    return counts


@transaction.atomic(durable=True)
def _approval_refund_found(*, approval_id: str) -> RefundApproval:
    """A refund approval ended `failed` because its refund failed as not known at the PSP, whose
    refund the PSP then made (`Refund.mark_found`): it is `sent`, its failure cleared. Idempotent.
    A booking cancel's escrow refund is not found after failing today (`refunds._refund_found_allowed`
    logs it for operations instead): should it ever be, its approval follows the same way."""
    approval = RefundApproval.objects.select_for_update().get(pk=approval_id)
    if approval.status == AP.FAILED and approval.refund_id and Refund.objects.filter(
            pk=approval.refund_id, status=OperationStatus.SUCCEEDED).exists():
        logger.warning("refund approval %s: its refund %s, failed as not known at the PSP, was made by it: sent",
                       approval.id, approval.refund_id)
        approval.mark_refund_found()
        approval.save()
    return approval


@transaction.atomic(durable=True)
def _approval_refund_failed(*, approval_id: str) -> RefundApproval:
    """A `sent` refund approval (plain, or a booking cancel's) whose refund failed since (the PSP
    refused it after accepting it): nothing was refunded, so it ends `failed`, saying why. Idempotent."""
    approval = RefundApproval.objects.select_for_update().get(pk=approval_id)
    refused = _refund_refused(approval, failure="") if approval.status == AP.SENT else ""
    if refused:
        approval.mark_refund_failed(failure=refused)
        approval.save()
    return approval


def refund_approval_reject(*, user, approval_id: str, note: str = "") -> RefundApproval:
    """Any finance user rejects (the requester too: that withdraws it); nothing is sent."""
    _require(user, APPROVE_PERMISSION)
    approval = _approval_for_staff(user, approval_id)
    return _approval_decide(user=user, approval_id=approval.id, verb="reject", note=note)


@dataclass(frozen=True, slots=True)
class StaffBookingCancelResult:
    booking: Booking | None = None  # canceled now (voided, or refunded within the threshold)
    approval: RefundApproval | None = None  # its escrow refund waits for a second finance user


def staff_booking_cancel(*, user, booking_id: str, reason: str) -> StaffBookingCancelResult:
    """Cancel a booking from the back office. A pending or held booking is voided at once. A
    confirmed one refunds its whole escrow: that needs `payments.refund_booking`, and above the
    merchant's threshold of the booking's currency (decided under the booking's lock) it becomes a refund
    approval: a second finance user's approval cancels the booking and sends the refund."""
    _require(user, BOOKING_CANCEL_PERMISSION)
    reason = staff_reason_check(reason)
    booking = Booking.objects.select_related("merchant").filter(pk=booking_id).first()
    if booking is None or not staff_can_access_merchant(user, booking.merchant_id):
        raise NotFoundError("No such booking.", param="booking")
    try:
        done = booking_cancel(merchant=booking.merchant, booking_id=booking.pk, actor=_actor(user),
                              allow_refund=user.has_perm(BOOKING_REFUND_PERMISSION),
                              refund_limit=booking.merchant.refund_approval_threshold_for(booking.currency))
    except BookingRefundNeedsApprovalError:
        return StaffBookingCancelResult(approval=_approval_create(
            user=user, payment_id=booking.payment_id, amount=0, reason=reason, booking_id=booking.pk))
    return StaffBookingCancelResult(booking=done)


def staff_payment_cancel(*, user, payment_id: str) -> Payment:
    _require(user, CANCEL_PERMISSION)
    payment = _payment_for_staff(user, payment_id)
    return payment_cancel(merchant=payment.merchant, payment_id=payment.id, actor=_actor(user))


def staff_payment_recover(*, user, payment_id: str) -> dict[str, int]:
    """Re-run recovery for one payment now: recovery's own step for that payment
    (`payment_recover`: its open attempts, pending captures and refunds, a crashed cancel and its
    disputes' pending evidence). What is younger than the grace period (its request may be
    running right now) is left alone, as `recovery_run` does."""
    _require(user, RECOVER_PERMISSION)
    payment = _payment_for_staff(user, payment_id)
    return payment_recover(payment_id=payment.id)
