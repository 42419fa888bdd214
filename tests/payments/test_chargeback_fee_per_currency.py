"""The chargeback fee is per currency, in that currency's own minor units
(`PAYMENTS_CHARGEBACK_FEE`, a table: payera.core.money.per_currency_amount).

What was wrong (fix 14a): the fee was 1500 minor units whatever the currency (15.00 EUR, but ¥1,500
— about EUR 9 — and 1.500 KWD — about EUR 4.5). Real payments at the alpha sandbox (EUR, JPY with
exponent 0, KWD with exponent 3), disputed through the service the webhook worker calls."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.core.checks import run_checks

from ledger.models import Entry
from payments.models import Dispute, Payment
from payments.services import dispute_apply_event, payment_create
from psp_adapters.port import DisputeInfo, DisputeReason, DisputeStatus, Outcome, PspEvent, PspEventKind, PspReference
from tests.merchants.factories import MerchantFactory

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


@pytest.fixture
def merchant(db, psp_settings):
    return MerchantFactory(connectors=["alpha"])


def _disputed(merchant, *, amount: int, currency: str) -> Dispute:
    payment = payment_create(merchant=merchant, amount=amount, currency=currency, payment_method_data=CARD)
    assert payment.status == "succeeded" and payment.currency == currency
    attempt = payment.attempts.get()
    event = PspEvent(
        event_id=f"evt_{attempt.id}", kind=PspEventKind.DISPUTE, outcome=Outcome.APPROVED,
        payment=PspReference(attempt.id, attempt.psp_reference or None), amount=amount, currency=currency,
        occurred_at=dt.datetime.now(dt.UTC),
        dispute=DisputeInfo(psp_dispute_id=f"dp_{attempt.id}", reason=DisputeReason.FRAUDULENT,
                            status=DisputeStatus.NEEDS_RESPONSE),
    )
    assert dispute_apply_event(connector="alpha", event=event, actor="psp:alpha") == "dispute: created"
    return Dispute.objects.get(payment=payment)


def _fee_taken(dispute: Dispute) -> int:
    entry = Entry.objects.get(journal__reference=f"chargeback_fee:{dispute.id}", account__owner=dispute.merchant_id)
    assert entry.account.currency == dispute.currency
    return abs(entry.amount)


@pytest.mark.parametrize(
    "currency, amount, fee",
    [("EUR", 1000, 1500), ("JPY", 1000, 2500), ("KWD", 1000, 5000)],
    ids=["EUR-2-decimals", "JPY-0-decimals", "KWD-3-decimals"],
)
def test_the_chargeback_fee_is_the_currencys_own(merchant, currency, amount, fee):
    dispute = _disputed(merchant, amount=amount, currency=currency)
    assert (dispute.currency, dispute.fee) == (currency, fee)
    assert _fee_taken(dispute) == fee
    assert Payment.objects.get(pk=dispute.payment_id).amount_disputed == amount


def test_a_currency_missing_from_the_table_derives_from_the_star_entry_and_says_so(merchant, settings, caplog):
    settings.PAYMENTS_CHARGEBACK_FEE = {"EUR": 1500, "*": 1500}  # 15.00 of the major unit
    with caplog.at_level(logging.WARNING, logger="payera.money"):
        dispute = _disputed(merchant, amount=1000, currency="KWD")
    assert dispute.fee == 15_000 and _fee_taken(dispute) == 15_000  # 15.000 KWD, not 1.500
    assert "PAYMENTS_CHARGEBACK_FEE names no amount for KWD: 15000 minor units derived" in caplog.text


@pytest.mark.parametrize("table", [1500, {"EUR": 1500}, {"XAU": 1, "*": 1500}, {"EUR": -1, "*": 1500}],
                         ids=["one-number", "no-star", "not-payable", "negative"])
def test_a_malformed_table_stops_the_start(settings, table):
    settings.PAYMENTS_CHARGEBACK_FEE = table
    assert [e.id for e in run_checks() if e.id == "payments.E001"]


def test_the_shipped_tables_pass_the_checks():
    assert not [e for e in run_checks() if e.id in ("payments.E001", "reconciliation.E001")]
