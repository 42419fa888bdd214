"""One lock helper per aggregate (Saleor's lock_objects): the payment row guards its attempts,
captures and refunds. Take the payment first, then children, inside a transaction."""

from __future__ import annotations

from payments.models import Payment


def payment_lock(payment_id: str) -> Payment:
    """`SELECT … FOR UPDATE` of the payment row (only it: not its merchant or payment method, which
    are loaded alongside for reading), inside the caller's transaction."""
    return Payment.objects.select_for_update(of=("self",)).select_related("merchant", "payment_method").get(
        pk=payment_id
    )
