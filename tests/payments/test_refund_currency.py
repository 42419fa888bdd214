"""A refund naming a currency (POST /v1/refunds `currency`) other than its payment's.

Amounts are minor units of the payment's currency. The refund endpoint ignored a `currency` it was
given, so a merchant asking to refund `{"amount": 1000, "currency": "JPY"}` (¥1000) of a EUR
payment had 10.00 EUR refunded — 60 times the amount meant, money gone to the shopper. A currency
other than the payment's is now refused (400 `currency_mismatch`, `param: currency`) before
anything is recorded or sent; the payment's own currency (in any case) is accepted.
"""

from __future__ import annotations

import pytest

from payments.models import Refund
from tests.merchants.factories import MerchantFactory, make_api_key

pytestmark = [pytest.mark.django_db]

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


@pytest.fixture
def alpha_client(psp_settings):
    from tests.conftest import client_for

    merchant = MerchantFactory(connectors=["alpha"])
    return client_for(make_api_key(merchant).secret)


def test_a_refund_in_another_currency_than_the_payments_is_refused(alpha_client):
    p = alpha_client.post(
        "/v1/payments", {"amount": 5000, "currency": "EUR", "payment_method_data": CARD}, format="json"
    ).json()
    assert p["status"] == "succeeded"
    r = alpha_client.post(
        "/v1/refunds",
        {"payment": p["id"], "amount": 1000, "currency": "JPY"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="refund-1",
    )
    assert r.status_code == 400, r.json()
    assert (r.json()["error"]["code"], r.json()["error"]["param"]) == ("currency_mismatch", "currency")
    assert not Refund.objects.filter(payment_id=p["id"]).exists()
    assert alpha_client.get(f"/v1/payments/{p['id']}").json()["amount_refunded"] == 0
    # an unknown currency is 400 as everywhere; the payment's own currency is taken (the key is free again)
    bad = alpha_client.post("/v1/refunds", {"payment": p["id"], "amount": 1000, "currency": "XYZ"}, format="json")
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "currency")
    ok = alpha_client.post(
        "/v1/refunds",
        {"payment": p["id"], "amount": 1000, "currency": "eur"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="refund-1",
    )
    assert ok.status_code == 201, ok.json()
    assert (ok.json()["amount"], ok.json()["currency"], ok.json()["status"]) == (1000, "EUR", "succeeded")
