"""One lock helper per aggregate (Saleor's lock_objects): the payment row guards its attempts,
captures and refunds. Take the payment first, then children, inside a transaction."""

from __future__ import annotations

from django.db.models import Subquery

from payera.audit.snapshot import audit_base_remember
from payments.models import Payment


def _locking():
    # the booking too (a LEFT JOIN, not locked): whether a payment has one never changes after
    # its insert (a booking is created in its payment's insert transaction), so the recording
    # services need not ask again (payments.services.booking_sync.payment_has_booking)
    return Payment.objects.select_for_update(of=("self",)).select_related("merchant", "payment_method", "booking")


def payment_lock(payment_id: str) -> Payment:
    """`SELECT … FOR UPDATE` of the payment row (only it: not its merchant, payment method or
    booking, which are loaded alongside for reading), inside the caller's transaction. The locked
    row is the base of its next audit entry (no re-read: payera.audit.snapshot)."""
    payment = _locking().get(pk=payment_id)
    audit_base_remember(payment)
    return payment


def payment_lock_of_attempt(attempt_id: str) -> Payment:
    """`payment_lock` of the payment an attempt belongs to, in one statement (the attempt's
    `payment_id` never changes). PaymentAttempt.DoesNotExist if there is no such attempt."""
    from payments.models import PaymentAttempt

    try:
        payment = _locking().get(pk=Subquery(PaymentAttempt.objects.filter(pk=attempt_id).values("payment_id")[:1]))
    except Payment.DoesNotExist:
        raise PaymentAttempt.DoesNotExist(f"no attempt {attempt_id}") from None
    audit_base_remember(payment)
    return payment
