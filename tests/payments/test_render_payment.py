"""`render_payment` builds the contract's payment object without DRF's serializer (built and
deep-copied per call: docs/decisions/precompiled-sql-hot-path.md, session 6): it must stay exactly
`PaymentOutputSerializer(payment).data` — the same keys in the same order, the same values."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from payments.models import Payment, PaymentAttempt
from payments.serializers import PaymentOutputSerializer, render_payment
from tests.conftest import client_for
from tests.merchants.factories import MerchantFactory, make_api_key

pytestmark = [pytest.mark.django_db]


def card(number: str) -> dict:
    return {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def same_as_drf(payment: Payment) -> dict:
    drf = dict(PaymentOutputSerializer(payment).data)
    ours = render_payment(payment)
    assert list(ours) == list(drf)
    assert ours == drf
    assert json.dumps(ours) == json.dumps(drf)  # the bytes of an answer or an event
    return ours


def test_the_render_is_the_serializers_for_payments_of_every_outcome(psp_settings):
    merchant = MerchantFactory(connectors=["alpha", "beta"])
    client = client_for(make_api_key(merchant).secret)
    customer = client.post(
        "/v1/customers",
        data=json.dumps({"email": "a@example.com"}),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="cus",
    ).json()["id"]
    bodies = [
        {"payment_method_data": card("4242424242424242")},
        {
            "payment_method_data": card("4242424242424242"),
            "capture_method": "manual",
            "description": "order 7",
            "return_url": "https://shop.example/back",
            "metadata": {"order": "7", "n": "1"},
        },
        {"payment_method_data": card("4000000000000002")},  # hard decline: last_error
        {"payment_method_data": card("4000000000000119")},  # soft decline, cascaded: two attempts
        {"payment_method_data": card("4000000000003220")},  # 3-D Secure: next_action
        {"payment_method_data": card("4242424242424242"), "customer": customer, "setup_future_usage": "off_session"},
        {"payment_method_data": card("4242424242424242"), "confirm": False},
    ]
    for i, body in enumerate(bodies):
        answer = client.post(
            "/v1/payments",
            data=json.dumps({"amount": 1000, "currency": "EUR", **body}),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=f"k{i}",
        )
        assert answer.status_code == 201, answer.content
    payments = list(Payment.objects.filter(merchant=merchant).select_related("payment_method"))
    assert len(payments) == len(bodies)
    rendered = [same_as_drf(p) for p in payments]
    assert {r["status"] for r in rendered} >= {
        "succeeded",
        "requires_capture",
        "failed",
        "requires_action",
        "requires_confirmation",
    }
    assert any(len(r["attempts"]) == 2 for r in rendered)
    assert any(r["last_error"] for r in rendered) and any(r["next_action"] for r in rendered)
    assert any(r["customer"] for r in rendered) and any(r["metadata"] for r in rendered)


def test_the_render_is_the_serializers_for_unusual_values():
    merchant = MerchantFactory()
    at = dt.datetime(2026, 12, 6, 5, 30, tzinfo=dt.UTC)
    payment = Payment(
        merchant=merchant,
        amount=5,
        currency="EUR",
        metadata={"a": 1, "b": None, 3: "c"},
        last_error={"code": "card_declined", "message": "no"},
        next_action={"type": "x", "n": [1]},
        review_reason="amount_mismatch",
        created_at=at,
    )
    payment.save()
    payment = Payment.objects.get(pk=payment.pk)
    payment.metadata = {"a": 1, "b": None, 3: "c"}  # not as stored: DRF's str() of keys and values
    rendered = same_as_drf(payment)
    assert rendered["payment_method"] is None and rendered["last_error"]["decline_code"] is None
    assert rendered["metadata"] == {"a": "1", "b": None, "3": "c"}
    PaymentAttempt.objects.create(
        payment=payment,
        merchant_id=merchant.id,
        sequence=2,
        connector="beta",
        amount=5,
        currency="EUR",
        decline_code="generic_decline",
    )
    PaymentAttempt.objects.create(
        payment=payment, merchant_id=merchant.id, sequence=1, connector="alpha", amount=5, currency="EUR"
    )
    payment.metadata = None
    rendered = same_as_drf(Payment.objects.get(pk=payment.pk))
    assert [a["connector"] for a in rendered["attempts"]] == ["alpha", "beta"]
    payment.last_error = None
    assert same_as_drf(payment)["metadata"] is None
