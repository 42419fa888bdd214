"""Reads of bookings. Every selector takes `merchant`: other merchants' ids are 404."""

from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from payera.core.errors import InvalidRequestError, NotFoundError
from payera.merchants.models import Merchant
from payera.merchants.scoping import owned_get
from payments.bookings_models import BS, Booking
from payments.models import OperationStatus, Refund


class BookingNotFoundError(NotFoundError):
    default_message = "No such booking."


def _bookings() -> QuerySet[Booking]:
    # the refund and the succeeded refunds' sum: amount_escrowed, in the same query
    succeeded = (Refund.objects.filter(payment_id=OuterRef("payment_id"), status=OperationStatus.SUCCEEDED)
                 .order_by().values("payment_id").annotate(s=Sum("amount")).values("s"))
    return Booking.objects.select_related("payment", "refund").annotate(
        escrow_refunded=Coalesce(Subquery(succeeded), Value(0)))


def booking_get(*, merchant: Merchant, booking_id: str) -> Booking:
    return owned_get(_bookings(), merchant=merchant, pk=booking_id, error=BookingNotFoundError)


def booking_list(*, merchant: Merchant, status: str | None = None, reference: str | None = None,
                 payment_id: str | None = None) -> QuerySet[Booking]:
    qs = _bookings().filter(merchant=merchant)
    if status:
        if status not in BS.values:
            raise InvalidRequestError(f"status must be one of {', '.join(BS.values)}.", param="status")
        qs = qs.filter(status=status)
    if reference:
        qs = qs.filter(reference=reference)
    if payment_id:
        qs = qs.filter(payment_id=payment_id)
    return qs
