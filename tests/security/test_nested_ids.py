"""Another merchant's payment method named in a body is 404, as if it did not exist — and not a
different answer (400 "not saved to a customer") that would tell its id is real. The route-walking
tenant test (tests/merchants/test_tenant_isolation.py) names saved methods, which the customer
check refuses anyway; a method used once (saved to no customer) is only refused by the merchant."""

from __future__ import annotations

import time

import pytest

from payments.models import Payment
from tests.merchants.tenant_routes import _payment

pytestmark = pytest.mark.django_db


def test_another_merchants_one_off_payment_method_is_404_for_payments_and_bookings(make_merchant_client):
    _, client_a = make_merchant_client(connectors=["alpha"])
    merchant_b, _ = make_merchant_client(connectors=["alpha"])
    pm_b = Payment.objects.get(pk=_payment(merchant_b)).payment_method_id
    bodies = {
        "/v1/payments": {"amount": 100, "currency": "EUR", "payment_method": pm_b},
        "/v1/bookings": {"amount": 100, "currency": "EUR", "payment_method": pm_b, "reference": "stay",
                         "hold_expires_at": int(time.time()) + 3600},
    }  # fmt: skip
    for url, body in bodies.items():
        response = client_a.post(url, body, format="json")
        assert response.status_code == 404, (url, response.content)
        assert response.json()["error"]["code"] == "resource_missing"
