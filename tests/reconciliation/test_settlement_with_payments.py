"""End to end with the real payments core: card payments captured through the sandbox PSP alpha,
a refund, then settlement, a payout and its statement; the ledger ties out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ledger.verify import ledger_verify
from payments.services import payment_create, refund_create
from reconciliation.models import Payout
from reconciliation.selectors import payout_statement
from reconciliation.services import payout_create, payout_mark_in_transit, payout_mark_paid, settlement_run
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import available, make_payout, pending

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "737"}}


def test_real_captures_and_refunds_settle_pay_out_and_tie_out(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"], settlement_delay_days=2)
    make_payout(merchant, gross=1_000, fee=10, now=timezone.now() - timedelta(days=30))  # bank account, an old payout
    paid = [payment_create(merchant=merchant, amount=amount, currency="EUR", payment_method_data=CARD)
            for amount in (10_000, 2_500)]
    assert all(p.status == "succeeded" for p in paid)
    refund_create(merchant=merchant, payment_id=paid[0].id, amount=1_000)
    owed = pending(merchant.id)
    assert 0 < owed < 11_500  # net of fees and the refund

    assert settlement_run(merchant_id=merchant.id)[0].amount == 0  # younger than the delay
    [outcome] = settlement_run(merchant_id=merchant.id, now=timezone.now() + timedelta(days=2))
    assert outcome.amount == owed and pending(merchant.id) == 0 and available(merchant.id) == owed

    result = payout_create(merchant_id=merchant.id, currency="EUR", now=timezone.now() + timedelta(days=2))
    payout = Payout.objects.get(pk=result.payout_id)
    payout_mark_in_transit(payout_id=payout.id)
    payout_mark_paid(payout_id=payout.id)
    statement = payout_statement(payout=payout)
    kinds = sorted({line.kind for line in statement.lines})
    assert kinds == ["capture", "fee", "refund"] and statement.ties_out
    assert {line.reference.split(":", 1)[0] for line in statement.lines} >= {"capture", "capture_fee", "refund"}
    assert ledger_verify().ok
