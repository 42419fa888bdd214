"""Bookings (escrow): a manual-capture payment whose capture goes into the merchant's escrow
account, released to its pending balance when the booking is completed (docs/api.md "Bookings",
docs/ledger.md "Escrow").

Every use case follows the payments services' three steps: a durable block claims the booking's
one in-flight mutation under its lock (payment row first, then the booking row), the payment
service makes the PSP call outside any transaction (start -> call -> record, each in its own
durable block), and a durable block records the outcome and releases the claim. The booking
follows its payment's transitions in the payment's own transactions (`booking_sync`), so a
webhook, a 3-D Secure return or recovery moves it exactly as the synchronous answer does.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from payera.core.errors import InvalidRequestError, NotFoundError, PayeraError
from payera.core.masking import mask_text
from payera.idempotency.services import idempotency_resource_record
from payera.merchants.models import Merchant
from payments.bookings_models import BS, Booking
from payments.locks import payment_lock
from payments.method_types import method_spec
from payments.models import PS, CaptureMethod, OperationStatus, Payment, Refund
from payments.postings import escrow_release_amount, escrow_release_journals
from payments.services.booking_sync import booking_apply_payment_status, booking_emit, booking_transition
from payments.services.common import PaymentInProgressError, PaymentStateError, now, post, postings_last, setting
from payments.services.payments import PspOperationFailedError, payment_cancel, payment_capture, payment_create
from payments.services.refunds import refund_create
from psp_adapters.errors import PspError

logger = logging.getLogger("payera.payments")


class BookingNotFoundError(NotFoundError):
    default_message = "No such booking."


class BookingStateError(PaymentStateError):
    code = "booking_unexpected_state"
    default_message = "The booking's status does not allow this operation."


class BookingHoldExpiredError(BookingStateError):
    code = "booking_hold_expired"
    default_message = "The booking's hold has expired: it can no longer be confirmed."


class BookingInProgressError(PaymentInProgressError):
    code = "booking_in_progress"
    default_message = "Another operation on this booking is in progress; retry shortly."


class BookingRefundPermissionError(PayeraError):
    type = "permission_error"
    code = "permission_denied"
    http_status = 403
    default_message = "Canceling a confirmed booking refunds its escrow: that needs the refund permission (finance)."


class BookingRefundNeedsApprovalError(PayeraError):
    """Raised under the booking's lock, before any PSP call: canceling this confirmed booking
    would refund more than the caller's `refund_limit` (staff: the merchant's approval threshold).
    The back office turns it into a refund approval (payments.backoffice)."""

    type = "permission_error"
    code = "four_eyes_required"
    http_status = 403
    default_message = "Canceling this booking refunds more than the approval threshold: a second finance user approves."


class BookingRefundFailedError(PayeraError):
    type = "invalid_request_error"
    code = "booking_refund_failed"
    http_status = 400
    default_message = "The refund out of escrow failed: the booking is unchanged."


# --- helpers ----------------------------------------------------------------------------
def booking_lock(booking_id: str, *, merchant: Merchant | None = None) -> tuple[Payment, Booking]:
    """Lock the booking's payment, then the booking (the order every payments service uses)."""
    row = Booking.objects.filter(pk=booking_id).values_list("payment_id", "merchant_id").first() \
        if isinstance(booking_id, str) else None
    if row is None or (merchant is not None and row[1] != merchant.id):
        raise BookingNotFoundError()
    payment = payment_lock(row[0])
    booking = Booking.objects.select_for_update(of=("self",)).get(pk=booking_id)
    booking.payment = payment
    return payment, booking


def _claimed(booking: Booking) -> bool:
    """Another operation holds the booking's claim (not timed out: a crashed request's is taken over)."""
    timeout = dt.timedelta(seconds=setting("PAYMENTS_INFLIGHT_TIMEOUT", 120))
    return bool(booking.inflight) and booking.inflight_at is not None and booking.inflight_at > now() - timeout


def _claim(booking: Booking, operation: str) -> None:
    if _claimed(booking):
        raise BookingInProgressError()
    booking.inflight = operation
    booking.inflight_at = now()


@transaction.atomic(durable=True)
def _release(*, booking_id: str, operation: str) -> None:
    _payment, booking = booking_lock(booking_id)
    if booking.inflight == operation:
        booking.inflight, booking.inflight_at = "", None
        booking.save()


def _hold_expires_at(value) -> dt.datetime:
    """Unix seconds (as the API shows times) or an ISO 8601 date-time with a zone; in the future,
    and at most BOOKINGS_MAX_HOLD_DAYS (7, the card networks' authorization life) ahead."""
    at: dt.datetime | None = None
    if isinstance(value, dt.datetime):
        at = value
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            at = dt.datetime.fromtimestamp(value, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            at = None
    elif isinstance(value, str) and value:
        try:
            at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            at = None
    if at is None or timezone.is_naive(at):
        raise InvalidRequestError(
            "hold_expires_at must be unix seconds or an ISO 8601 date-time with a time zone.", param="hold_expires_at"
        )
    current = now()
    if at <= current:
        raise InvalidRequestError("hold_expires_at must be in the future.", param="hold_expires_at")
    max_days = setting("BOOKINGS_MAX_HOLD_DAYS", 7)
    if at > current + dt.timedelta(days=max_days):
        raise InvalidRequestError(f"hold_expires_at may be at most {max_days} days ahead.",
                                  param="hold_expires_at", code="hold_too_long")
    return at


def _escrow_refund(*, merchant: Merchant, booking: Booking, amount: int, actor: str,
                   on_begin: Callable[[Refund], None] | None = None) -> Refund:
    """The booking's one refund out of escrow; a refund that a crashed earlier request left
    (pending or succeeded) is taken over, never made twice. A failed refund raises."""
    live = _escrow_refund_live(booking.payment_id)
    if live is not None:
        if live.amount != amount:
            raise BookingStateError(f"A refund of {live.amount} out of this booking's escrow is already under way.",
                                    param="amount")
        return live
    # refund_create records a PSP error as the refund's outcome: failed, or pending when the
    # outcome is unknown (recovery asks the PSP; the refund then comes out of escrow all the same)
    refund = refund_create(merchant=merchant, payment_id=booking.payment_id, amount=amount, reason="booking",
                           actor=actor, for_booking=True, on_begin=on_begin)
    if refund.status == OperationStatus.FAILED:
        raise BookingRefundFailedError(
            f"The refund out of escrow failed ({refund.failure_code or 'refused'}): the booking is unchanged."
        )
    return refund


def _escrow_refund_live(payment_id: str) -> Refund | None:
    """The booking's refund out of escrow that is not failed (pending or succeeded), if any: while
    the booking is confirmed every refund of its payment is the booking's own (`booking_guard`)."""
    return Refund.objects.filter(payment_id=payment_id).exclude(status=OperationStatus.FAILED).first()


def _escrow_refund_matches(booking: Booking, *, rest: int, param: str | None = "amount") -> None:
    """Under the booking's lock: a completion that leaves `rest` to refund (a cancel: all of it)
    must agree with the refund an earlier request already made out of the escrow (a cancel or a
    partial completion that crashed after its refund, before recording the booking). Released
    escrow is computed as if the only refund is the rest: releasing beside a refund of another
    amount would pay the merchant money the shopper already got back."""
    live = _escrow_refund_live(booking.payment_id)
    if live is None or live.amount == rest:
        return
    if live.amount == booking.amount_captured:
        raise BookingStateError(
            f"The booking's whole amount ({live.amount}) was already refunded out of its escrow by a cancel "
            "that did not finish: cancel the booking again to record it."
        )
    raise BookingStateError(
        f"A refund of {live.amount} out of this booking's escrow was already made by an earlier request: "
        f"complete it with amount {booking.amount_captured - live.amount}.",
        param=param,
    )


def _refund_still_live(refund_id: str | None) -> None:
    """Under the payment lock: a refund that failed between its answer (pending) and now (its
    webhook came in between) leaves the booking confirmed, its escrow intact."""
    if refund_id and Refund.objects.filter(pk=refund_id, status=OperationStatus.FAILED).exists():
        raise BookingRefundFailedError()


# --- create -----------------------------------------------------------------------------
def _holds(method_type: object) -> bool:
    """A booking needs a method that can hold money (authorize now, capture later): cards."""
    try:
        return method_spec(str(method_type)).holds
    except InvalidRequestError:  # an unknown type: payment validation explains it
        return True


def booking_create(
    *,
    merchant: Merchant,
    amount: int,
    currency: str,
    reference: str,
    hold_expires_at,
    payment_method_data: dict | None = None,
    payment_method: str | None = None,
    customer: str | None = None,
    return_url: str | None = None,
    description: str | None = None,
    metadata: dict | None = None,
    actor: str = "api",
) -> Booking:
    """Authorize the amount (a manual-capture payment, confirmed at once) for a booking held until
    `hold_expires_at`. The booking is inserted in the payment's own insert transaction, before any
    PSP call, and follows the payment: `held` when authorized, `pending` during 3-D Secure or an
    asynchronous PSP's answer, `failed` when declined."""
    if not isinstance(reference, str) or not reference.strip() or len(reference) > 255:
        raise InvalidRequestError("reference must be a non-empty string of at most 255 characters.",
                                  param="reference")
    if mask_text(reference) != reference:  # it lands in events, webhooks and the admin
        raise InvalidRequestError("reference must not contain a card number or a secret.", param="reference")
    hold = _hold_expires_at(hold_expires_at)
    if isinstance(payment_method_data, dict) and not _holds(payment_method_data.get("type", "card")):
        raise InvalidRequestError("A booking is paid by card.", param="payment_method_data")
    made: list[str] = []

    def insert(payment: Payment) -> None:
        if payment.payment_method is not None and not _holds(payment.payment_method.type):
            raise InvalidRequestError("A booking is paid by card.", param="payment_method")
        booking = Booking(merchant=merchant, payment=payment, amount=payment.amount, currency=payment.currency,
                          reference=reference, hold_expires_at=hold, metadata=payment.metadata)
        booking.save(force_insert=True)
        idempotency_resource_record(resource=booking.id)  # a retry after a crash answers this booking
        booking_emit(booking, "booking.created")
        made.append(booking.id)

    payment_create(
        merchant=merchant, amount=amount, currency=currency, payment_method_data=payment_method_data,
        payment_method=payment_method, customer=customer, capture_method=CaptureMethod.MANUAL, confirm=True,
        return_url=return_url, description=description, metadata=metadata, actor=actor, with_row=insert,
    )
    return Booking.objects.select_related("payment").get(pk=made[0])


# --- confirm: capture into escrow ----------------------------------------------------------
def booking_confirm(*, merchant: Merchant, booking_id: str, actor: str = "api") -> Booking:
    """Capture the hold into the merchant's escrow account: `held` -> `confirmed`. With an
    asynchronous PSP the capture may still be pending: the booking stays `held` (and is not
    expired meanwhile) until the PSP confirms it, then becomes `confirmed` (event)."""
    booking = _confirm_begin(merchant=merchant, booking_id=booking_id)
    if booking is None:  # confirmed already, the capture still pending at the PSP: that is the answer
        return Booking.objects.select_related("payment").get(pk=booking_id)
    try:
        payment_capture(merchant=merchant, payment_id=booking.payment_id, actor=actor, for_booking=True)
    finally:
        _release(booking_id=booking.id, operation="confirm")
    return Booking.objects.select_related("payment").get(pk=booking.id)


@transaction.atomic(durable=True)
def _confirm_begin(*, merchant: Merchant, booking_id: str) -> Booking | None:
    payment, booking = booking_lock(booking_id, merchant=merchant)
    if booking.status != BS.HELD:
        raise BookingStateError(f"A booking in status {booking.status} cannot be confirmed.")
    if payment.captures.exclude(status=OperationStatus.FAILED).exists():
        # an earlier confirm's capture is pending (asynchronous PSP, or its outcome unknown): the
        # booking is confirmed when the PSP confirms it (and is not expired meanwhile)
        if _claimed(booking):
            raise BookingInProgressError()
        return None
    if booking.hold_expires_at <= now():
        raise BookingHoldExpiredError()
    _claim(booking, "confirm")
    booking.save()
    return booking


# --- complete: release escrow --------------------------------------------------------------
def booking_complete(*, merchant: Merchant, booking_id: str, amount: int | None = None,
                     actor: str = "api") -> Booking:
    """Release the escrow to the merchant's pending balance: `confirmed` -> `completed`.
    Partial completion: `amount` (≤ captured) is released (less the fee it bears) and the rest is
    refunded to the shopper out of escrow first; if that refund fails the booking is unchanged."""
    booking, rest = _complete_begin(merchant=merchant, booking_id=booking_id, amount=amount)
    try:
        refund = _escrow_refund(merchant=merchant, booking=booking, amount=rest, actor=actor) if rest else None
        _complete_record(booking_id=booking.id, amount=booking.amount_captured - rest,
                         refund_id=refund.id if refund else None, actor=actor)
    finally:
        _release(booking_id=booking.id, operation="complete")
    return Booking.objects.select_related("payment").get(pk=booking.id)


@transaction.atomic(durable=True)
def _complete_begin(*, merchant: Merchant, booking_id: str, amount: int | None) -> tuple[Booking, int]:
    _payment, booking = booking_lock(booking_id, merchant=merchant)
    if booking.status != BS.CONFIRMED:
        raise BookingStateError(f"A booking in status {booking.status} cannot be completed.")
    if amount is None:
        amount = booking.amount_captured
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidRequestError("amount must be a positive integer (cancel the booking to refund it all).",
                                  param="amount")
    if amount > booking.amount_captured:
        raise InvalidRequestError(
            f"amount ({amount}) exceeds what the booking captured ({booking.amount_captured}).",
            param="amount", code="amount_too_large",
        )
    _escrow_refund_matches(booking, rest=booking.amount_captured - amount)
    _claim(booking, "complete")
    booking.save()
    return booking, booking.amount_captured - amount


@transaction.atomic(durable=True)
def _complete_record(*, booking_id: str, amount: int, refund_id: str | None, actor: str) -> None:
    payment, booking = booking_lock(booking_id)
    _refund_still_live(refund_id)
    if booking.dispute_id:  # a dispute ended the escrow meanwhile: nothing left to release
        return
    _escrow_refund_matches(booking, rest=booking.amount_captured - amount)  # the claim may have timed out
    _complete_apply(payment, booking, amount=amount, refund_id=refund_id, actor=actor)


def _complete_apply(payment: Payment, booking: Booking, *, amount: int, refund_id: str | None, actor: str) -> None:
    """Under the booking's lock, in the caller's durable block: `confirmed` -> `completed`, `amount`
    released (less the fee it bears), the rest refunded by `refund_id`."""
    released = escrow_release_amount(gross=booking.amount_captured, fee=booking.fee, amount=amount)
    with postings_last():
        booking.refund_id = refund_id
        if not booking_transition(booking, "mark_completed", payment=payment, actor=actor, released=released,
                                  refunded=booking.amount_captured - amount, at=now()):
            raise BookingStateError(f"A booking in status {booking.status} cannot be completed.")
        idempotency_resource_record(resource=booking.id)  # a retry after a crash answers this booking
        post(escrow_release_journals(booking_id=booking.id, merchant_id=booking.merchant_id, amount=released,
                                     currency=booking.currency),
             occurred_at=now(), metadata={"booking": booking.id, "payment": payment.id})


# --- cancel: void before capture, refund after ----------------------------------------------
def booking_cancel(*, merchant: Merchant, booking_id: str, actor: str = "api", allow_refund: bool = True,
                   refund_limit: int | None = None,
                   on_refund_begin: Callable[[Refund], None] | None = None) -> Booking:
    """`pending`/`held`: the authorization is voided (a 3-D Secure wait is dropped).
    `confirmed`: the whole capture is refunded out of escrow (the fee comes back with it), unless
    `allow_refund` is false (staff without the refund permission): BookingRefundPermissionError,
    or the capture is above `refund_limit` (staff: four eyes): BookingRefundNeedsApprovalError;
    both decided under the booking's lock, so a confirmation landing meanwhile is never refunded
    by them. `on_refund_begin` is `refund_create`'s `on_begin` for the escrow refund (an approval
    binds it there)."""
    booking = _cancel_begin(merchant=merchant, booking_id=booking_id, allow_refund=allow_refund,
                            refund_limit=refund_limit)
    try:
        if booking.status == BS.CONFIRMED:
            refund = _escrow_refund(merchant=merchant, booking=booking, amount=booking.amount_captured, actor=actor,
                                    on_begin=on_refund_begin)
            _cancel_record(booking_id=booking.id, refund_id=refund.id, actor=actor)
        else:
            payment_cancel(merchant=merchant, payment_id=booking.payment_id, actor=actor, for_booking=True)
    finally:
        _release(booking_id=booking.id, operation="cancel")
    return Booking.objects.select_related("payment").get(pk=booking.id)


@transaction.atomic(durable=True)
def _cancel_begin(*, merchant: Merchant, booking_id: str, allow_refund: bool = True,
                  refund_limit: int | None = None) -> Booking:
    payment, booking = booking_lock(booking_id, merchant=merchant)
    if booking.status not in (BS.PENDING, BS.HELD, BS.CONFIRMED):
        raise BookingStateError(f"A booking in status {booking.status} cannot be canceled.")
    if booking.status == BS.CONFIRMED and not allow_refund:
        raise BookingRefundPermissionError()
    if (booking.status == BS.CONFIRMED and refund_limit is not None and booking.amount_captured > refund_limit
            and _escrow_refund_live(booking.payment_id) is None):  # a crashed cancel's refund: only recorded now
        raise BookingRefundNeedsApprovalError()
    if booking.status == BS.PENDING and payment.status == PS.PROCESSING:
        raise BookingStateError("The authorization's outcome is not known yet: cancel once the booking is held.")
    if booking.status == BS.HELD and payment.captures.filter(status=OperationStatus.PENDING).exists():
        raise BookingStateError("A capture of this booking is under way: cancel once it is confirmed.")
    if booking.status == BS.CONFIRMED:  # a crashed partial completion's refund: say how to finish it
        _escrow_refund_matches(booking, rest=booking.amount_captured, param=None)
    _claim(booking, "cancel")
    booking.save()
    return booking


@transaction.atomic(durable=True)
def _cancel_record(*, booking_id: str, refund_id: str, actor: str) -> None:
    payment, booking = booking_lock(booking_id)
    _refund_still_live(refund_id)
    if booking.dispute_id:  # a dispute ended the escrow meanwhile; the refund stands
        return
    _cancel_apply(payment, booking, refund_id=refund_id, actor=actor)


def _cancel_apply(payment: Payment, booking: Booking, *, refund_id: str, actor: str) -> None:
    """Under the booking's lock, in the caller's durable block: `confirmed` -> `canceled`, its
    whole capture refunded out of escrow by `refund_id`."""
    booking.refund_id = refund_id
    if not booking_transition(booking, "mark_canceled", payment=payment, actor=actor,
                              refunded=booking.amount_captured, at=now()):
        raise BookingStateError(f"A booking in status {booking.status} cannot be canceled.")
    idempotency_resource_record(resource=booking.id)  # a retry after a crash answers this booking


# --- recovery: a cancel or a partial completion that died after its refund -------------------
RECOVERABLE_CLAIMS = ("cancel", "complete")


def bookings_crashed(*, older_than: dt.datetime, payment_id: str | None = None) -> list[str]:
    """Confirmed bookings that a crashed cancel or partial completion left behind (recovery's
    step, `recovery.py`): a succeeded refund out of their escrow older than `older_than` (the
    request that made it is gone: its refund was recorded, the booking not), or a `cancel` /
    `complete` claim older than it. A claim younger than it is a request running now: left alone."""
    qs = Booking.objects.filter(status=BS.CONFIRMED).filter(
        Q(payment__refunds__status=OperationStatus.SUCCEEDED, payment__refunds__created_at__lt=older_than)
        | Q(inflight__in=RECOVERABLE_CLAIMS, inflight_at__lt=older_than)
    ).exclude(inflight_at__gte=older_than)
    if payment_id is not None:
        qs = qs.filter(payment_id=payment_id)
    return list(qs.order_by("pk").values_list("pk", flat=True).distinct())


@transaction.atomic(durable=True)
def booking_recover(*, booking_id: str, older_than: dt.datetime, actor: str = "system:recovery") -> str:
    """Finish what a crashed request began, as it would have ended, under the booking's lock (a
    merchant's retry racing it finds the booking closed, or finishes it first: one effect).
    The booking's refund out of escrow succeeded: its whole capture -> the cancel is recorded
    (`canceled`); less -> the partial completion is (`completed`, the rest released), the amount
    read from the refund as `_escrow_refund_matches` does. No live refund (the refund never
    reached the PSP and failed, or the request died before it): nothing was done, the claim is
    released so the merchant may try again at once. A refund still pending waits for its outcome
    (recovery's refund step or its webhook): the booking is finished on a later run. Returns
    `canceled`, `completed`, `released` or "" (nothing to do)."""
    payment, booking = booking_lock(booking_id)
    if booking.inflight and booking.inflight_at is not None and booking.inflight_at >= older_than:
        return ""  # a request is running right now
    if booking.status != BS.CONFIRMED or booking.dispute_id:
        return ""
    live = _escrow_refund_live(payment.id)
    if live is None:
        if booking.inflight not in RECOVERABLE_CLAIMS:
            return ""
        booking.inflight, booking.inflight_at = "", None
        booking.save()
        return "released"
    if live.status != OperationStatus.SUCCEEDED or live.created_at >= older_than:
        return ""
    booking.inflight, booking.inflight_at = "", None
    if live.amount == booking.amount_captured:
        _cancel_apply(payment, booking, refund_id=live.id, actor=actor)
        logger.warning("booking %s: a crashed cancel recorded by recovery (refund %s)", booking.id, live.id)
        return "canceled"
    _complete_apply(payment, booking, amount=booking.amount_captured - live.amount, refund_id=live.id, actor=actor)
    logger.warning("booking %s: a crashed partial completion recorded by recovery (refund %s)", booking.id, live.id)
    return "completed"


# --- expiry ---------------------------------------------------------------------------------
def booking_expire(*, booking_id: str, now_: dt.datetime | None = None) -> bool:
    """Void an unconfirmed hold whose `hold_expires_at` has passed: -> `expired`. False when the
    booking is not due (confirmed meanwhile, a capture or another operation under way, or the
    authorization's outcome still unknown): the next run looks again."""
    booking = _expire_begin(booking_id=booking_id, at=now_ or now())
    if booking is None:
        return False
    try:
        payment_cancel(merchant=booking.merchant, payment_id=booking.payment_id, actor="system:booking_expiry",
                       for_booking=True)
    except (PspOperationFailedError, PspError) as exc:
        if getattr(exc, "may_have_processed", False):
            raise
        # the void was refused: payment_cancel asked the PSP why (_void_refused_inquire) and
        # recorded a capture it made on its own (its webhook lost), which confirmed the booking and
        # ends the expiry; else the next tick would void a captured authorization again
        if not Booking.objects.filter(pk=booking.id, status=BS.CONFIRMED).exists():
            raise
        logger.warning("booking %s: the void of its expiry was refused, its hold captured by the PSP: confirmed",
                       booking.id)
    finally:
        _expire_release(booking_id=booking.id)
    return Booking.objects.filter(pk=booking.id, status=BS.EXPIRED).exists()


@transaction.atomic(durable=True)
def _expire_release(*, booking_id: str) -> None:
    """Release the expiry's claim, unless the void's outcome is unknown (it timed out and the PSP
    did not say voided yet: the payment keeps its `cancel` claim for recovery). Then the claim stays,
    so the cancel recovery records later is the expiry's: the booking ends `expired`, not `canceled`
    (booking_sync.booking_apply_payment_status); the next expiry tick takes it over if the void
    never arrived."""
    payment, booking = booking_lock(booking_id)
    if booking.inflight != "expire":
        return
    if payment.inflight == "cancel" and payment.status != PS.CANCELED and booking.status in (BS.PENDING, BS.HELD):
        return
    booking.inflight, booking.inflight_at = "", None
    booking.save()


@transaction.atomic(durable=True)
def _expire_begin(*, booking_id: str, at: dt.datetime) -> Booking | None:
    payment, booking = booking_lock(booking_id)
    if booking.status not in (BS.PENDING, BS.HELD) or booking.hold_expires_at > at:
        return None
    booking_apply_payment_status(booking, payment, actor="system:booking_expiry", catch_up=True)  # if behind
    if booking.status not in (BS.PENDING, BS.HELD):
        return None
    timeout = dt.timedelta(seconds=setting("PAYMENTS_INFLIGHT_TIMEOUT", 120))
    busy = bool(payment.inflight) and payment.inflight_at is not None and payment.inflight_at > now() - timeout
    if payment.status not in (PS.REQUIRES_CAPTURE, PS.REQUIRES_ACTION) or busy:
        return None  # unknown outcome, or a capture/cancel in flight: look again next run
    if payment.captures.exclude(status=OperationStatus.FAILED).exists():
        return None  # a capture is under way (asynchronous PSP): confirm wins
    try:
        _claim(booking, "expire")
    except BookingInProgressError:
        return None
    booking.save()
    booking.merchant  # noqa: B018  (loaded for the caller, outside the transaction)
    return booking


def booking_expire_due(*, now_: dt.datetime | None = None, limit: int = 500) -> list[str]:
    """The scheduler's tick (Celery beat and `manage.py run_booking_expiry`): expire every
    unconfirmed hold past its `hold_expires_at`. Safe to run twice or concurrently."""
    at = now_ or now()
    # only holds that can be voided now (what _expire_begin accepts): one whose outcome is unknown
    # or whose capture is under way waits for that, and must not hold a place in the tick meanwhile
    due = list(Booking.objects.filter(status__in=[BS.PENDING, BS.HELD], hold_expires_at__lte=at,
                                      payment__status__in=[PS.REQUIRES_CAPTURE, PS.REQUIRES_ACTION])
               .exclude(payment__captures__status__in=[OperationStatus.PENDING, OperationStatus.SUCCEEDED])
               .order_by("hold_expires_at").values_list("pk", flat=True)[:limit])
    done = []
    for booking_id in due:
        try:
            if booking_expire(booking_id=booking_id, now_=at):
                done.append(booking_id)
        except (PayeraError, PspError):
            logger.warning("could not expire booking %s; the next run retries", booking_id, exc_info=True)
    return done
