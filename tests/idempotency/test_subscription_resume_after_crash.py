"""One effect per Idempotency-Key for POST /v1/subscriptions when the first try's answer was lost.

What was wrong (found in review): the subscription create did not bind the subscription to its
key (`idempotency_resource_record`) and its view had no `idempotent_resume`, so a retry that took
over the crashed first try's claim created a second subscription and charged the customer again.

A request that committed its work but died before its answer was stored leaves its key in flight;
after the lock timeout a retry takes the key over. For POST /v1/payments, /v1/refunds and
/v1/bookings that retry answers what the first try created (`idempotency_resource_record` +
`idempotent_resume`). POST /v1/subscriptions charges money too (its first period at once), so it
must be resumed the same way — never a second subscription and a second charge."""

from __future__ import annotations

import pytest

from payments.models import Payment, Subscription
from tests.idempotency.test_crash_after_effect import CARD, lock_expires, lose_next_answer, post

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(psp_settings, api_key):
    api_key.api_key.merchant.connectors = ["alpha"]
    api_key.api_key.merchant.save()
    from tests.conftest import client_for

    return client_for(api_key.secret)


def _saved_card(client) -> tuple[str, str]:
    cus = post(client, "/v1/customers", {"name": "Ada"}, "c-1").json()["id"]
    pay = post(
        client,
        "/v1/payments",
        {
            "amount": 500,
            "currency": "EUR",
            "customer": cus,
            "setup_future_usage": "off_session",
            "payment_method_data": CARD,
        },
        "p-1",
    )
    assert pay.status_code == 201 and pay.json()["status"] == "succeeded", pay.content
    return cus, pay.json()["payment_method"]["id"]


def test_subscription_retry_after_a_crash_answers_the_first_subscription_and_charges_once(
    client, merchant, monkeypatch
):
    cus, pm = _saved_card(client)
    body = {"customer": cus, "payment_method": pm, "amount": 900, "currency": "EUR", "interval": "month"}
    lose_next_answer(monkeypatch)
    from django.db import OperationalError

    with pytest.raises(OperationalError):
        post(client, "/v1/subscriptions", body, "s-1")
    [first] = Subscription.objects.filter(merchant=merchant)
    assert first.current_period == 1  # the first period was charged
    lock_expires("s-1")
    retry = post(client, "/v1/subscriptions", body, "s-1")
    assert retry.status_code == 201, retry.content
    assert Subscription.objects.filter(merchant=merchant).count() == 1, "a second subscription was created"
    assert retry.json()["id"] == first.id
    charges = Payment.objects.filter(merchant=merchant, amount=900, status="succeeded")
    assert charges.count() == 1, "the customer was charged twice for one request"
