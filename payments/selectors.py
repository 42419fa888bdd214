"""Reads of the payments app. Every selector takes `merchant`: other merchants' ids are 404."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from payera.core.errors import NotFoundError
from payera.merchants.models import Merchant
from payera.merchants.scoping import owned_get
from payments.models import Customer, Dispute, Payment, PaymentAttempt, Refund


class CustomerNotFoundError(NotFoundError):
    default_message = "No such customer."


class PaymentNotFoundError(NotFoundError):
    default_message = "No such payment."


class DisputeNotFoundError(NotFoundError):
    default_message = "No such dispute."


class RefundNotFoundError(NotFoundError):
    default_message = "No such refund."


def customer_get(*, merchant: Merchant, customer_id: str) -> Customer:
    return owned_get(Customer.objects.all(), merchant=merchant, pk=customer_id, error=CustomerNotFoundError)


def customer_list(*, merchant: Merchant) -> QuerySet[Customer]:
    return Customer.objects.for_merchant(merchant)


def _payments() -> QuerySet[Payment]:
    return Payment.objects.select_related("payment_method").prefetch_related(
        Prefetch("attempts", queryset=PaymentAttempt.objects.order_by("sequence"))
    )


def payment_get(*, merchant: Merchant, payment_id: str) -> Payment:
    return owned_get(_payments(), merchant=merchant, pk=payment_id, error=PaymentNotFoundError)


def payment_list(*, merchant: Merchant) -> QuerySet[Payment]:
    return _payments().filter(merchant=merchant)


def refund_get(*, merchant: Merchant, refund_id: str) -> Refund:
    return owned_get(Refund.objects.all(), merchant=merchant, pk=refund_id, error=RefundNotFoundError)


def refund_list(*, merchant: Merchant, payment_id: str | None = None) -> QuerySet[Refund]:
    qs = Refund.objects.for_merchant(merchant)
    if payment_id:
        qs = qs.filter(payment_id=payment_id)
    return qs


def dispute_get(*, merchant: Merchant, dispute_id: str) -> Dispute:
    return owned_get(Dispute.objects.all(), merchant=merchant, pk=dispute_id, error=DisputeNotFoundError)


def dispute_list(*, merchant: Merchant, payment_id: str | None = None, status: str | None = None) -> QuerySet[Dispute]:
    qs = Dispute.objects.for_merchant(merchant)
    if payment_id:
        qs = qs.filter(payment_id=payment_id)
    if status:
        qs = qs.filter(status=status)
    return qs


def settlement_tables() -> dict[str, str]:
    """The tables reconciliation's matching SQL reads (read only, set-based): captures, refunds,
    disputes and attempts, by role. Reads across every merchant: reconciliation is PSP-wide."""
    from payments.models import Capture

    return {
        "attempt": PaymentAttempt._meta.db_table,
        "capture": Capture._meta.db_table,
        "refund": Refund._meta.db_table,
        "dispute": Dispute._meta.db_table,
    }
