"""One lock helper per aggregate (Saleor's lock_objects): the payment row guards its attempts,
captures and refunds. Take the payment first, then children, inside a transaction."""

from __future__ import annotations

from payera.audit.snapshot import audit_base_remember
from payments.models import Payment
from payments.rowsql import payment_select_for_update

# The lock loads the merchant, the payment method and the booking too (LEFT JOINs, not locked):
# whether a payment has a booking never changes after its insert (a booking is created in its
# payment's insert transaction), so the recording services need not ask again
# (payments.services.booking_sync.payment_has_booking). The statement is precompiled
# (payments.rowsql.payment_select_for_update): it is run at least once per payment.


def payment_lock(payment_id: str) -> Payment:
    """`SELECT … FOR UPDATE` of the payment row (only it: not its merchant, payment method or
    booking, which are loaded alongside for reading), inside the caller's transaction. The locked
    row is the base of its next audit entry (no re-read: payera.audit.snapshot)."""
    payment = payment_select_for_update(payment_id=payment_id)
    audit_base_remember(payment)
    return payment


def payment_lock_of_attempt(attempt_id: str) -> Payment:
    """`payment_lock` of the payment an attempt belongs to, in one statement (the attempt's
    `payment_id` never changes). PaymentAttempt.DoesNotExist if there is no such attempt."""
    from payments.models import PaymentAttempt

    try:
        payment = payment_select_for_update(attempt_id=attempt_id)
    except Payment.DoesNotExist:
        raise PaymentAttempt.DoesNotExist(f"no attempt {attempt_id}") from None
    audit_base_remember(payment)
    return payment
