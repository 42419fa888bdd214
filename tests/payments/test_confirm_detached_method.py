"""Confirming a payment whose saved card was detached meanwhile: 400 `payment_method_detached`,
before any PSP work, the payment left as it was.

What was wrong (found in review): the confirmation checked a detached method only for off-session
payments, so it committed the claim and a started attempt and then failed decrypting the shredded
card (500), leaving the payment `processing`. `_confirm_plan` now refuses a detached method for
every confirmation, under the payment's lock and before anything is written.

docs/api.md "Saved payment methods": detaching crypto-shreds the card and "any later payment or
subscription with it is 400 `payment_method_detached`". A payment created with `confirm: false`
on a saved card, confirmed after the card was detached, instead answers 500 `ciphertext_invalid`
and is left `processing` with its confirm claim held and a `started` attempt that no PSP ever
received: `_confirm_begin` (payments/services/payments.py) checks a detached method only for
off-session payments (`_confirm_plan`), commits the claim and the attempt, and only then does
`_confirm_attempts` decrypt the shredded card (`method_psp_data`, outside its try)."""

from __future__ import annotations

import pytest

from payments.models import Payment

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def test_confirming_a_payment_whose_card_was_detached_is_400_and_changes_nothing(make_merchant_client, psp_settings):
    merchant, client = make_merchant_client(connectors=["alpha"])
    cus = client.post("/v1/customers", {}, format="json").json()["id"]
    saving = client.post(
        "/v1/payments",
        {"amount": 500, "currency": "EUR", "customer": cus, "setup_future_usage": "off_session",
         "payment_method_data": CARD},
        format="json",
    ).json()  # fmt: skip
    assert saving["status"] == "succeeded", saving
    pm = saving["payment_method"]["id"]
    later = client.post(
        "/v1/payments", {"amount": 700, "currency": "EUR", "customer": cus, "payment_method": pm, "confirm": False},
        format="json",
    )  # fmt: skip
    assert later.status_code == 201 and later.json()["status"] == "requires_confirmation", later.content
    assert client.post(f"/v1/payment_methods/{pm}/detach", {}, format="json").status_code == 200

    response = client.post(f"/v1/payments/{later.json()['id']}/confirm", {}, format="json")
    payment = Payment.objects.get(pk=later.json()["id"])
    state = (payment.status, payment.inflight, list(payment.attempts.values_list("status", flat=True)))
    assert response.status_code == 400, (response.status_code, response.content, state)
    assert response.json()["error"]["code"] == "payment_method_detached"
    assert state == ("requires_confirmation", "", []), state
