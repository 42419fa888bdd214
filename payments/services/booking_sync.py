"""Where a booking meets its payment, inside the payments services' own transactions (internal
to payments.services).

- `booking_follow_payment`: called by `common.emit()` whenever a payment's transition records its
  event (the caller holds the payment lock, in the transition's atomic block): the booking of that
  payment, if any, follows it in the same transaction (authorized -> held, declined -> failed,
  captured -> confirmed (also when the expiry was voiding it: its claim ends), voided -> canceled or,
  when the expiry claimed it, expired).
- `payment_in_escrow` / `refund_in_escrow`: which merchant account a capture or a refund posts to.
- `booking_guard`: a booking's payment is moved only through the booking (its capture, cancel and
  refunds before completion), never through /v1/payments or /v1/refunds directly.
- `booking_dispute_opened`: a dispute on a confirmed booking's payment ends its escrow (called by
  the dispute service before it posts the chargeback).

Lock order everywhere: the payment row, then the booking row.
"""

from __future__ import annotations

import logging

from payera.events.services import event_record
from payments.bookings_models import BS, Booking
from payments.bookings_serializers import render_booking
from payments.models import PS, Capture, OperationStatus, Payment, Refund
from payments.postings import escrow_release_journals, refund_fee_share
from payments.services.common import PaymentStateError, now, post, transition

logger = logging.getLogger("payera.payments")


class PaymentBelongsToBookingError(PaymentStateError):
    code = "payment_belongs_to_booking"
    default_message = "This payment belongs to a booking: use the booking's endpoints (/v1/bookings/...)."


def booking_lock_for(payment_id: str) -> Booking | None:
    """The booking of a payment, locked (the caller holds the payment's lock already)."""
    return Booking.objects.select_for_update(of=("self",)).filter(payment_id=payment_id).first()


def booking_emit(booking: Booking, type_: str) -> None:
    event_record(merchant_id=booking.merchant_id, type=type_, data=render_booking(booking))


def booking_transition(booking: Booking, verb: str, *, payment: Payment, actor: str, **kwargs) -> bool:
    """Transition (logged in the payment's transition log), save and emit `booking.<status>`."""
    if not transition(booking, verb, payment=payment, actor=actor, **kwargs):
        return False
    booking.save()
    booking_emit(booking, f"booking.{booking.status}")
    return True


def payment_has_booking(payment: Payment) -> bool | None:
    """False/True when the payment was loaded with its booking (`payment_lock` does), else None."""
    if not Payment.booking.is_cached(payment):
        return None
    return Payment.booking.related.get_cached_value(payment) is not None


def booking_follow_payment(payment: Payment, *, actor: str = "system:booking") -> None:
    if payment_has_booking(payment) is False:
        return
    booking = booking_lock_for(payment.pk)
    if booking is None:
        return
    booking.payment = payment  # the caller's instance: transitioned, maybe not saved yet
    booking_apply_payment_status(booking, payment, actor=actor)


def booking_apply_payment_status(booking: Booking, payment: Payment, *, actor: str, catch_up: bool = False) -> None:
    """Move the booking to where its payment now is (no-op when it is there already).
    `catch_up`: a caller checking whether the booking is behind (the expiry), not a payment
    transition: it moves states only, and never announces a 3-D Secure wait again (its
    `booking.requires_action` went out with the payment's transition)."""
    at = now()
    status = payment.status
    if status == PS.REQUIRES_CAPTURE:
        booking_transition(booking, "mark_held", payment=payment, actor=actor)
    elif status == PS.REQUIRES_ACTION and booking.status == BS.PENDING:
        if not catch_up:
            booking_emit(booking, "booking.requires_action")
    elif status == PS.FAILED:
        booking_transition(booking, "mark_failed", payment=payment, actor=actor, at=at)
    elif status == PS.SUCCEEDED and booking.status == BS.HELD:
        if booking.inflight == "expire":
            # the expiry's void lost to a capture (the PSP's own, made while the void was under
            # way): the money is in escrow, the booking is confirmed and the expiry is over, as the
            # payment's `cancel` claim is (payments._capture_succeeded). Saved with the transition.
            booking.inflight, booking.inflight_at = "", None
        capture = Capture.objects.filter(payment_id=payment.pk, status=OperationStatus.SUCCEEDED).first()
        booking_transition(booking, "mark_confirmed", payment=payment, actor=actor, amount=payment.amount_captured,
                           fee=capture.fee if capture else 0, at=at)
    elif status == PS.CANCELED:
        # the expiry's claim outlives a void that timed out (bookings._expire_release): the cancel
        # recovery records later is still the expiry's
        expiring = booking.inflight == "expire"
        if expiring and booking.status in (BS.PENDING, BS.HELD):
            booking.inflight, booking.inflight_at = "", None  # done: saved with the transition
        booking_transition(booking, "mark_expired" if expiring else "mark_canceled", payment=payment, actor=actor,
                           at=at)


def payment_in_escrow(payment: Payment | str) -> bool:
    """A booking's capture goes to the merchant's escrow account, not its pending balance."""
    if isinstance(payment, Payment):
        known = payment_has_booking(payment)
        if known is not None:
            return known
        payment = payment.pk
    return Booking.objects.filter(payment_id=payment).exists()


def refund_in_escrow(refund: Refund) -> bool:
    """A refund comes out of escrow while the booking is confirmed (not completed), and so does the
    booking's own refund (cancel after confirm, the rest of a partial completion) whenever the PSP
    confirms it."""
    booking = Booking.objects.filter(payment_id=refund.payment_id).only("status", "refund_id").first()
    return booking is not None and (booking.status == BS.CONFIRMED or booking.refund_id == refund.pk)


def booking_escrow_refund_ahead(payment: Payment, refund: Refund) -> int:
    """The amount of the booking's own refund out of escrow while it is still pending (0 when
    there is none, or it settled or failed): a later refund out of pending that settles before it
    counts it first for the fee share (postings.refund_fee_back)."""
    if payment_has_booking(payment) is False:
        return 0
    refund_id = Booking.objects.filter(payment_id=refund.payment_id).values_list("refund_id", flat=True).first()
    if not refund_id or refund_id == refund.pk:
        return 0
    ahead = Refund.objects.filter(pk=refund_id, status=OperationStatus.PENDING).values_list("amount", flat=True)
    return ahead.first() or 0


def booking_guard(payment: Payment, operation: str) -> None:
    """Refuse a direct capture, cancel or refund of a booking's payment (the booking's own
    services pass `for_booking=True`). Refunds after completion (or after a cancel whose refund
    failed, or a dispute's cancel) are the merchant's own business (out of its pending balance,
    like any payment's)."""
    booking = Booking.objects.filter(payment_id=payment.pk).only("id", "status").first()
    if booking is None:
        return
    if operation == "refund" and booking.status in (BS.COMPLETED, BS.CANCELED):
        return
    raise PaymentBelongsToBookingError(
        f"This payment belongs to booking {booking.id}: use /v1/bookings/{booking.id} to {operation} it.",
        param="payment",
    )


def _escrow_taken_by_refund(booking: Booking, amount: int) -> int:
    """What the booking's refund of `amount` takes out of escrow: the amount less the share of the
    fee it returns (the booking has one refund out of escrow, so nothing was refunded before)."""
    return amount - refund_fee_share(fee=booking.fee, captured=booking.amount_captured, refunded_before=0,
                                     refund=amount)


def booking_escrow_refund_failed(payment: Payment, refund: Refund, *, actor: str) -> None:
    """The booking's own refund out of escrow failed after the booking closed (the PSP reported it
    later, e.g. card 4000000000005126): what it would have taken out of escrow (the refund less its
    fee share) is released to the merchant's pending balance, so no money stays in escrow for a
    closed booking; the merchant, told by `refund.failed` and `booking.refund_failed`, may refund
    again through /v1/refunds. While the booking is still confirmed (a refund refused at once),
    the booking service reports the failure and nothing moves."""
    booking = booking_lock_for(payment.pk)
    if booking is None or booking.refund_id != refund.pk or booking.status not in (BS.COMPLETED, BS.CANCELED):
        return
    back = _escrow_taken_by_refund(booking, refund.amount)
    booking.amount_refunded -= refund.amount
    booking.amount_released += back
    booking.payment = payment
    booking.save()
    post(escrow_release_journals(booking_id=booking.id, merchant_id=booking.merchant_id, amount=back,
                                 currency=booking.currency, refund_id=refund.id),
         occurred_at=now(), metadata={"booking": booking.id, "refund": refund.id, "payment": payment.id})
    booking_emit(booking, "booking.refund_failed")
    logger.warning("refund %s out of the escrow of booking %s failed: %s released to pending (%s)",
                   refund.id, booking.id, back, actor)


def booking_escrow_refund_reversed(payment: Payment, refund: Refund, *, taken: int, actor: str) -> bool:
    """A refund that came out of a booking's escrow succeeded, and the PSP now fails it (the
    shopper's bank sent it back: `refunds._refund_reverse`, the caller holding the payment lock).
    `taken` is what it had taken out of escrow (the refund less the fee share it returned).
    Returns True when its reversal goes back into escrow: the booking is still `confirmed` (the
    cancel or partial completion that made the refund died before recording the booking), so its
    escrow holds the money again and it can be completed or canceled for it. Once the booking is
    closed nothing is held in escrow for it: the money goes to pending (False) and the booking's
    counters say so, as for a refund that fails while still pending (`booking_escrow_refund_failed`):
    its `amount_refunded` loses the refund, its `amount_released` gains what the refund had taken.
    Either way the merchant is told (`booking.refund_failed`)."""
    booking = booking_lock_for(payment.pk)
    if booking is None:  # pragma: no cover - only a booking's refund comes out of escrow
        return False
    booking.payment = payment
    into_escrow = booking.status == BS.CONFIRMED
    if not into_escrow:
        if booking.refund_id == refund.pk:
            booking.amount_refunded -= refund.amount
        booking.amount_released += taken
        booking.save()
    booking_emit(booking, "booking.refund_failed")
    logger.warning("refund %s out of the escrow of booking %s (%s) was sent back after it succeeded: %s back "
                   "to %s (%s)", refund.id, booking.id, booking.status, taken,
                   "escrow" if into_escrow else "pending", actor)
    return into_escrow


def booking_dispute_opened(payment: Payment, *, dispute_id: str, actor: str) -> None:
    """A dispute opened on a booking's payment (the caller holds the payment lock and posts the
    chargeback next, from the merchant's pending balance as for any payment). While the booking is
    confirmed, its money sits in escrow: the escrow has done its job (the card network now decides
    who gets the money), so the booking's whole share, the capture less its fee, is released to
    pending with the same journal a completion would post (`escrow_release:<bk>`: a booking's
    escrow is released once) and the booking ends `canceled` with its `dispute` (a merchant must
    not fulfil a booking the shopper disputed). Nothing stays in escrow for it, and
    the merchant's balance after the chargeback is what it is for any disputed payment. A booking
    already completed or canceled has nothing in escrow: nothing moves here."""
    if payment_has_booking(payment) is False:
        return
    booking = booking_lock_for(payment.pk)
    if booking is None or booking.status != BS.CONFIRMED:
        return
    # while confirmed, every refund of the payment is the booking's own, out of escrow (a cancel's
    # or a partial completion's whose request is still recording): what it took is not there, and
    # `amount_escrowed` counts it
    released = booking.amount_escrowed
    booking.payment = payment
    if not booking_transition(booking, "mark_disputed", payment=payment, actor=actor, dispute_id=dispute_id,
                              released=released, at=now()):
        return
    post(escrow_release_journals(booking_id=booking.id, merchant_id=booking.merchant_id, amount=released,
                                 currency=booking.currency),
         occurred_at=now(), metadata={"booking": booking.id, "payment": payment.id, "dispute": dispute_id})
