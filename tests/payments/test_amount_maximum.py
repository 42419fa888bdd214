"""One payment's amount is at most `payera.core.money.MAX_AMOUNT` (99,999,999,999 minor units).

What was wrong: `POST /v1/payments` took any amount below 2**53. The ledger keeps each account's
balance in a bigint, and a connector's receivable (`psp_receivable:alpha:EUR`) is one account
shared by every merchant until settlement. Measured on PostgreSQL with the alpha sandbox: 1,024
payments of 2**53 - 1 EUR from one merchant, and the 1,025th was captured by alpha but its
recording transaction failed (`ledger_post_batch`: "bigint out of range"): a 500, the attempt left
`started` with the money taken at the PSP and not in the ledger (recovery fails the same way), and
the shared receivable one capture away from refusing every other merchant's card payments in EUR
at alpha. The bound (as subscriptions') is now MAX_AMOUNT: above any single card payment, and 92
million such payments away from an overflow. Above it: 400 `parameter_invalid`, `param` `amount`,
before anything is stored or any PSP is called.
"""

from __future__ import annotations

import pytest

from payera.core.money import MAX_AMOUNT
from payments.models import Payment, Subscription
from tests.merchants.tenant_routes import CARD

pytestmark = pytest.mark.django_db


def _refused(response) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "parameter_invalid", "amount")


@pytest.mark.parametrize("amount", [MAX_AMOUNT + 1, 2**53 - 1])
def test_a_payment_above_the_maximum_is_400_before_any_psp_call(merchant_client, psp_settings, amount):
    r = merchant_client.post(
        "/v1/payments", {"amount": amount, "currency": "EUR", "payment_method_data": CARD}, format="json"
    )
    _refused(r)
    assert not Payment.objects.exists()
    assert not [p for sb in psp_settings.values() for p in sb.payments() if p["amount"] == amount]


def test_the_maximum_itself_is_paid(merchant_client, psp_settings):
    r = merchant_client.post(
        "/v1/payments", {"amount": MAX_AMOUNT, "currency": "EUR", "payment_method_data": CARD}, format="json"
    )
    assert r.status_code == 201, r.content
    assert (r.json()["status"], r.json()["amount_captured"]) == ("succeeded", MAX_AMOUNT)


def test_a_subscription_above_the_maximum_is_400_before_anything_is_stored(merchant_client):
    r = merchant_client.post(
        "/v1/subscriptions",
        {
            "customer": "cus_x",
            "payment_method": "pm_x",
            "amount": MAX_AMOUNT + 1,
            "currency": "EUR",
            "interval": "month",
        },
        format="json",
    )
    _refused(r)
    assert not Subscription.objects.exists()
