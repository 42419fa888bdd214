"""Abandoned redirects: a payment waiting for its shopper on a page (the bank's page of a bank
redirect, or a card's 3-D Secure challenge) who never comes back expires after
PAYMENTS_REDIRECT_EXPIRY_SECONDS (the scheduler runs `payment_expire_redirects` every minute). A
booking's payment is left to the booking's own expiry (`hold_expires_at`).

Expiring is a PSP call like any other (STYLE: three steps): the authorization is canceled at
the PSP first (so a shopper who comes back late cannot pay a failed payment), then the payment
fails with `last_error.code = "payment_expired"`. If the PSP refuses the cancel because the
shopper paid in the meantime, or cannot be reached, the PSP's own state decides (recovery's
inquiry): the shopper's return, beta's webhook and the expiry converge on one outcome, once.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction

from payera.core.db import outside_transaction
from payments.locks import payment_lock
from payments.method_types import METHOD_TYPES
from payments.models import AS, PS, Payment, PaymentAttempt
from payments.services.common import emit, inflight_release, now, setting, transition
from payments.services.inquiry import attempt_inquire
from payments.services.payments import void_reference, void_refused_record
from payments.services.recovery import attempt_recover
from psp_adapters.errors import PspError
from psp_adapters.port import Outcome, PspReference, PspState, VoidRequest
from psp_adapters.registry import get_adapter

logger = logging.getLogger("payera.payments")

REDIRECT_TYPES = [t for t, spec in METHOD_TYPES.items() if spec.redirect]


def expiry_error(seconds: int, method_type: str = "bank_redirect") -> dict:
    minutes = max(1, seconds // 60)
    what = "the bank redirect" if method_type in REDIRECT_TYPES else "3-D Secure authentication"
    return {"code": "payment_expired", "decline_code": None,
            "message": f"The shopper did not complete {what} within {minutes} minutes; the payment expired."}


def payment_expire_redirects(*, now_: dt.datetime | None = None, limit: int = 200) -> list[str]:
    """Expire the payments whose shopper has not come back in time from the bank's page or the
    3-D Secure challenge (any method type: a card's challenge waits for the shopper as a bank page
    does); returns their ids. Bookings' payments wait for their booking's expiry."""
    seconds = int(setting("PAYMENTS_REDIRECT_EXPIRY_SECONDS", 1800))
    cutoff = (now_ or now()) - dt.timedelta(seconds=seconds)
    due = PaymentAttempt.objects.filter(
        status=AS.REQUIRES_ACTION, created_at__lt=cutoff, payment__status=PS.REQUIRES_ACTION,
        payment__booking__isnull=True,
    ).order_by("created_at").values_list("pk", flat=True)[:limit]
    expired = []
    for attempt_id in list(due):
        if redirect_expire(attempt_id=attempt_id, seconds=seconds):
            expired.append(PaymentAttempt.objects.get(pk=attempt_id).payment_id)
    return expired


def redirect_expire(*, attempt_id: str, seconds: int) -> bool:
    """Cancel one abandoned redirect at the PSP, then fail the payment. True when it expired."""
    attempt = PaymentAttempt.objects.get(pk=attempt_id)
    if attempt.status != AS.REQUIRES_ACTION:
        return False
    number = attempt.void_number  # a void refused before (e.g. a merchant's cancel): a new reference
    try:
        with outside_transaction():
            result = get_adapter(attempt.connector).void(VoidRequest(
                payment=PspReference(attempt.id, attempt.psp_reference or None),
                reference=void_reference(attempt.id, number),
            ))
    except PspError as exc:  # refused (the shopper paid meanwhile) or unreachable: the PSP's state decides
        logger.info("cancel of the abandoned redirect %s refused or failed (%s): asking the PSP", attempt_id, exc.code)
        if exc.may_have_processed and _voided_at_psp(attempt):
            # our void went through, only its answer was lost: the redirect expired
            return _redirect_expired_record(attempt_id=attempt_id, seconds=seconds)
        if not exc.may_have_processed:  # refused: a later void of the attempt needs a new reference
            void_refused_record(attempt_id=attempt_id, number=number)
        attempt_recover(attempt_id=attempt_id)
        return False
    if result.outcome not in (Outcome.APPROVED, Outcome.PENDING):
        void_refused_record(attempt_id=attempt_id, number=number)
        attempt_recover(attempt_id=attempt_id)
        return False
    return _redirect_expired_record(attempt_id=attempt_id, seconds=seconds)


def _voided_at_psp(attempt: PaymentAttempt) -> bool:
    """Whether the PSP holds the attempt voided (False when it cannot be asked: recovery asks later)."""
    try:
        result = attempt_inquire(attempt)
    except PspError:  # including an answer about another reference (refused and logged there)
        return False
    return result.state == PspState.VOIDED


@transaction.atomic(durable=True)
def _redirect_expired_record(*, attempt_id: str, seconds: int) -> bool:
    attempt0_payment_id = PaymentAttempt.objects.values_list("payment_id", flat=True).get(pk=attempt_id)
    payment: Payment = payment_lock(attempt0_payment_id)
    attempt = PaymentAttempt.objects.get(pk=attempt_id)
    if attempt.status != AS.REQUIRES_ACTION:  # the shopper's return or the webhook was first
        logger.info("redirect %s already resolved (%s): expiry ignored", attempt_id, attempt.status)
        return False
    actor = "system:redirect_expiry"
    transition(attempt, "mark_withdrawn", payment=payment, actor=actor, reason="redirect expired: canceled at the PSP",
               at=now())
    attempt.save()
    method_type = payment.payment_method.type if payment.payment_method_id else "card"
    if transition(payment, "mark_failed", payment=payment, actor=actor, error=expiry_error(seconds, method_type)):
        emit(payment, "payment.failed")
    if payment.inflight == "confirm":
        inflight_release(payment)
    payment.save()
    return True
