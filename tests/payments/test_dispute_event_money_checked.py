"""A dispute takes back only money the payment took: in its currency, at most what is left to
dispute. A PSP event naming anything else is refused and raised to operations; nothing is posted.

What was wrong (review 13a): a dispute took whatever amount and currency the PSP's event named
(payments/services/disputes.py `_dispute_open`: `amount = event.amount or payment.amount_captured`,
`currency = event.currency or payment.currency`), never checked against the payment. A dispute event
in another currency posted a chargeback in that currency (a USD debit on the merchant's pending for a
EUR payment) and added USD units to the payment's EUR `amount_disputed`; one above the captured
amount took back more than Payera ever received for the payment.
"""

from __future__ import annotations

import datetime as dt

import pytest

from ledger.models import Entry
from payments.models import Dispute, InboxStatus, Payment
from payments.services import dispute_apply_event, payment_create
from payments.services.disputes import DisputeEventRefusedError
from payments.services.webhooks import _inbox_store, psp_webhook_process
from psp_adapters.port import (
    DisputeInfo,
    DisputeReason,
    DisputeStatus,
    Outcome,
    PspEvent,
    PspEventKind,
    PspReference,
)
from tests.merchants.factories import MerchantFactory

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


@pytest.fixture
def merchant(db, psp_settings):
    return MerchantFactory(connectors=["alpha"])


def _paid(merchant) -> Payment:
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
    assert payment.status == "succeeded" and payment.amount_captured == 1000
    return payment


def _event(payment: Payment, *, amount: int, currency: str, dispute_id: str = "dp_psp_1") -> PspEvent:
    attempt = payment.attempts.get()
    return PspEvent(
        event_id=f"evt_{dispute_id}",
        kind=PspEventKind.DISPUTE,
        outcome=Outcome.APPROVED,
        payment=PspReference(attempt.id, attempt.psp_reference or None),
        amount=amount,
        currency=currency,
        occurred_at=dt.datetime.now(dt.UTC),
        dispute=DisputeInfo(
            psp_dispute_id=dispute_id, reason=DisputeReason.FRAUDULENT, status=DisputeStatus.NEEDS_RESPONSE
        ),
    )


def _foreign_entries(merchant):
    return Entry.objects.filter(account__owner=merchant.id).exclude(account__currency="EUR")


@pytest.mark.parametrize(
    "amount, currency, why",
    [(1000, "USD", "another currency"), (5000, "EUR", "1000 left to dispute")],
    ids=["other_currency", "above_captured"],
)
def test_a_dispute_never_takes_back_other_money_than_the_payment_captured(merchant, amount, currency, why):
    payment = _paid(merchant)
    with pytest.raises(DisputeEventRefusedError, match=why):
        dispute_apply_event(
            connector="alpha", event=_event(payment, amount=amount, currency=currency), actor="psp:alpha"
        )
    payment.refresh_from_db()
    assert not Dispute.objects.filter(payment=payment).exists()
    assert payment.amount_disputed == 0
    assert not _foreign_entries(merchant).exists()
    assert not Entry.objects.filter(journal__reference__startswith="chargeback").exists()


def test_two_disputes_never_take_back_more_than_was_captured(merchant):
    payment = _paid(merchant)
    dispute_apply_event(connector="alpha", event=_event(payment, amount=600, currency="eur"), actor="psp:alpha")
    with pytest.raises(DisputeEventRefusedError, match="400 left to dispute"):
        dispute_apply_event(
            connector="alpha",
            event=_event(payment, amount=600, currency="EUR", dispute_id="dp_psp_2"),
            actor="psp:alpha",
        )
    payment.refresh_from_db()
    assert payment.amount_disputed == 600
    assert list(Dispute.objects.filter(payment=payment).values_list("amount", "currency")) == [(600, "EUR")]


def test_a_refused_dispute_webhook_is_raised_to_operations_at_once_and_moves_no_money(merchant):
    """The inbound webhook applies what the PSP's dispute inquiry answers (fix 14a): alpha holds no
    dispute `dp_psp_1`, so the event is refused whatever money it names."""
    payment = _paid(merchant)
    row = _inbox_store(connector="alpha", event=_event(payment, amount=1000, currency="USD"), body=b"{}")
    assert psp_webhook_process(webhook_id=row.pk) == "failed"
    row.refresh_from_db()
    assert row.status == InboxStatus.FAILED and row.note.startswith("refused: ")  # not parked, not retried
    assert "alpha does not know dispute dp_psp_1" in row.note
    assert psp_webhook_process(webhook_id=row.pk) == InboxStatus.FAILED  # applying it again changes nothing
    assert not Dispute.objects.filter(payment=payment).exists()
    assert not _foreign_entries(merchant).exists()
