"""Payments for back-office tests, made through the payments services against the sandbox PSPs."""

from __future__ import annotations

import time

from payera.events.services import event_relay_pending
from payments.models import AS, OperationStatus, Payment, PaymentAttempt, Refund
from payments.services import attempt_recover, customer_create, payment_create
from payments.services.recovery import operation_recover
from psp_adapters.port import OperationKind

APPROVED = "4242424242424242"
# declined by alpha (processing_error, soft: cascades), approved by beta
ALPHA_DECLINES_BETA_APPROVES = "4000000000000119"


def card(number: str) -> dict:
    return {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "737"}}


def settle(payment_id: str, *, timeout: float = 8.0) -> Payment:
    """Beta answers asynchronously (`pending`): ask it until its attempts and refunds are decided,
    as its webhook or the recovery inquiry would tell us; then relay the outbox (deliveries)."""
    deadline = time.monotonic() + timeout
    while True:
        attempts = list(PaymentAttempt.objects.filter(payment_id=payment_id, status=AS.PENDING).values_list(
            "pk", flat=True))
        refunds = list(Refund.objects.filter(payment_id=payment_id, status=OperationStatus.PENDING).values_list(
            "pk", flat=True))
        if not attempts and not refunds:
            event_relay_pending(min_age_seconds=0)  # the outbox fans out to the merchant's endpoints
            return Payment.objects.get(pk=payment_id)
        if time.monotonic() > deadline:
            raise AssertionError(f"{payment_id} still pending at the PSP: {attempts} {refunds}")
        for attempt_id in attempts:
            attempt_recover(attempt_id=attempt_id)
        for refund_id in refunds:
            operation_recover(kind=OperationKind.REFUND, operation_id=refund_id)
        time.sleep(0.1)


def pay(merchant, *, amount: int = 10_000, number: str = ALPHA_DECLINES_BETA_APPROVES, email: str = "",
        connectors=("alpha", "beta"), **kwargs) -> Payment:
    """A payment of `merchant`, confirmed now and settled (captured unless capture_method="manual").
    The default card is declined by alpha and approved by beta: two attempts, one decline code."""
    if merchant.connectors != list(connectors):
        merchant.connectors = list(connectors)
        merchant.save(update_fields=["connectors"])
    customer = customer_create(merchant=merchant, email=email).id if email else None
    payment = payment_create(merchant=merchant, amount=amount, currency="EUR", payment_method_data=card(number),
                             customer=customer, **kwargs)
    return settle(payment.pk)
