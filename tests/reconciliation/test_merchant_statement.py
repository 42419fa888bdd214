"""The merchant statement for a period: opening balance, every balance transaction booked in the
period (the entries GET /v1/balance_transactions lists) and the closing balance, per currency and
balance; it ties out with real sandbox payments, a refund, settlement and a paid payout."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import timedelta

import pytest
from django.utils import timezone

from ledger.selectors import balance_get, balance_transaction_list
from payera.core.ids import opaque_id
from payera.staff.access import staff_grant_merchant
from payments.services import payment_create, refund_create
from reconciliation.services import (
    payout_create,
    payout_mark_in_transit,
    payout_mark_paid,
    payout_settings_update,
    settlement_run,
)
from reconciliation.statements import merchant_statement
from tests.backoffice.staff import make_staff, otp_force_login
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import BANK_ACCOUNT

pytestmark = pytest.mark.django_db(transaction=True)  # each service commits: journals get their own times

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "737"}}
URL = "/admin/reconciliation/payout/merchant-statement/"


def _sections(statement) -> dict[tuple[str, str], object]:
    return {(s.currency, s.balance): s for s in statement.sections}


def _paid_out_merchant():
    """Two captures and a refund (before `mid`), then settlement, a payout and its payment (after)."""
    merchant = MerchantFactory(connectors=["alpha"], settlement_delay_days=2)
    payout_settings_update(
        merchant_id=merchant.id, bank_account=BANK_ACCOUNT, bank_account_holder="Shop GmbH",
        minimum_payout_amounts={"EUR": 100},
    )
    start = timezone.now()
    paid = [
        payment_create(merchant=merchant, amount=a, currency="EUR", payment_method_data=CARD) for a in (10_000, 2_500)
    ]
    assert all(p.status == "succeeded" for p in paid)
    refund_create(merchant=merchant, payment_id=paid[0].id, amount=1_000)
    mid = timezone.now()
    later = timezone.now() + timedelta(days=2)
    [run] = settlement_run(merchant_id=merchant.id, now=later)
    assert run.amount > 0
    outcome = payout_create(merchant_id=merchant.id, currency="EUR", now=later)
    payout_mark_in_transit(payout_id=outcome.payout_id)
    payout_mark_paid(payout_id=outcome.payout_id)
    return merchant, start, mid, timezone.now() + timedelta(seconds=1), run.amount, outcome.amount


def test_a_period_ties_out_and_chains_into_the_next_with_real_payments_settlement_and_a_payout(psp_settings):
    merchant, start, mid, end, settled, paid_out = _paid_out_merchant()
    first = merchant_statement(merchant_id=merchant.id, start=start, end=mid)
    second = merchant_statement(merchant_id=merchant.id, start=mid, end=end)
    whole = merchant_statement(merchant_id=merchant.id, start=start, end=end)
    assert first.ties_out and second.ties_out and whole.ties_out

    s1, s2 = _sections(first), _sections(second)
    assert set(s1) == {("EUR", "pending")} and s1[("EUR", "pending")].opening == 0
    kinds = sorted({t.type for t in s1[("EUR", "pending")].transactions})
    assert kinds == ["capture", "fee", "refund"]
    assert s1[("EUR", "pending")].closing == settled  # everything captured, net of fees and the refund
    # the next period opens where this one closed; settlement moves pending -> available, the payout leaves
    assert s2[("EUR", "pending")].opening == settled and s2[("EUR", "pending")].closing == 0
    available = s2[("EUR", "available")]
    assert available.opening == 0 and [t.type for t in available.transactions] == ["settlement", "payout"]
    assert [t.amount for t in available.transactions] == [settled, -paid_out] and available.closing == 0

    # the closing balance is the one GET /v1/balance shows, and every balance transaction is listed once
    balance = balance_get(owner=merchant.id)
    assert {("EUR", "pending"): balance.pending[0].amount, ("EUR", "available"): balance.available[0].amount} == {
        k: s.closing for k, s in _sections(whole).items()
    }
    listed = sorted(t.id for s in whole.sections for t in s.transactions)
    assert listed == sorted(opaque_id("txn", e.id) for e in balance_transaction_list(owner=merchant.id))


def test_finance_exports_the_statement_of_its_merchants_only(client, psp_settings):
    merchant, *_ = _paid_out_merchant()
    other = MerchantFactory()
    user = make_staff("fin", role="finance")
    staff_grant_merchant(user=user, merchant_id=merchant.id)
    otp_force_login(client, user)
    assert b"merchant-statement" in client.get("/admin/reconciliation/payout/").content
    today = timezone.now().date()
    form = {"merchant": merchant.id, "start": today - timedelta(days=1), "end": today + timedelta(days=1)}
    response = client.post(URL, form)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv"), response.content[:500]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    total: dict[tuple, int] = defaultdict(int)
    for r in rows:
        key = (r["currency"], r["balance"])
        if r["row"] == "opening":
            total[key] = int(r["amount_minor"])
            assert total[key] == 0
        elif r["row"] == "transaction":
            total[key] += int(r["amount_minor"])
            assert int(r["running_balance_minor"]) == total[key] and r["transaction_id"].startswith("txn_")
        else:
            assert int(r["amount_minor"]) == total[key]
    assert {r["type"] for r in rows} >= {"capture", "fee", "refund", "settlement", "payout"}
    assert client.post(URL, {**form, "merchant": other.id}).status_code == 403  # not one of hers
    otp_force_login(client, make_staff("ops", role="operations"))
    assert client.post(URL, form).status_code == 403
