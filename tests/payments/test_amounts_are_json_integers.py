"""CONTRACT "Requests": amounts are positive integers in minor units and bodies are JSON. DRF's
IntegerField took `"1000"`, `"1000.0"` and `1000.0` as 1000 (a live `make run` created a payment of
100 for `"amount": "100"`), while the card's own numbers were already strict: every amount of the
API is now a JSON integer or 400 `parameter_invalid`, with nothing created and no PSP called."""

from __future__ import annotations

import time

import pytest

from payments.models import Booking, Payment, Refund, Subscription
from tests.merchants.tenant_routes import CARD, _booking, _payment, _saved_method

pytestmark = pytest.mark.django_db

NOT_INTEGERS = ["1000", "1000.0", 1000.0, "1e3", True]


def _refused(response, param: str) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "parameter_invalid", param)


@pytest.mark.parametrize("value", NOT_INTEGERS)
def test_a_payment_amount_must_be_a_json_integer(merchant_client, value):
    r = merchant_client.post(
        "/v1/payments", {"amount": value, "currency": "EUR", "payment_method_data": CARD}, format="json"
    )
    _refused(r, "amount")
    assert not Payment.objects.exists()


@pytest.mark.parametrize("value", NOT_INTEGERS)
def test_capture_and_refund_amounts_must_be_json_integers(merchant_client, merchant, value):
    payment_id = _payment(merchant)
    _refused(
        merchant_client.post(f"/v1/payments/{payment_id}/capture", {"amount_to_capture": value}, format="json"),
        "amount_to_capture",
    )
    _refused(merchant_client.post("/v1/refunds", {"payment": payment_id, "amount": value}, format="json"), "amount")
    assert not Refund.objects.exists()


@pytest.mark.parametrize("value", NOT_INTEGERS)
def test_booking_amounts_must_be_json_integers(merchant_client, merchant, value):
    r = merchant_client.post(
        "/v1/bookings",
        {
            "amount": value,
            "currency": "EUR",
            "payment_method_data": CARD,
            "reference": "stay",
            "hold_expires_at": int(time.time()) + 3600,
        },
        format="json",
    )
    _refused(r, "amount")
    booking_id = _booking(merchant)
    _refused(merchant_client.post(f"/v1/bookings/{booking_id}/complete", {"amount": value}, format="json"), "amount")
    assert Booking.objects.count() == 1


@pytest.mark.parametrize("value", NOT_INTEGERS)
def test_subscription_amount_and_interval_count_must_be_json_integers(merchant_client, merchant, value):
    from payments.models import PaymentMethod

    pm = PaymentMethod.objects.get(pk=_saved_method(merchant))
    body = {"customer": pm.customer_id, "payment_method": pm.id, "amount": 900, "currency": "EUR", "interval": "month"}
    _refused(merchant_client.post("/v1/subscriptions", {**body, "amount": value}, format="json"), "amount")
    _refused(
        merchant_client.post("/v1/subscriptions", {**body, "interval_count": value}, format="json"), "interval_count"
    )
    assert not Subscription.objects.exists()
