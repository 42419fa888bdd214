"""A request refused at validation (400, nothing done) never makes another request with its key fail
for good (CONTRACT "Requests": "a request rejected by validation (400) is not stored: the key may be
used again, corrected"; docs/decisions/idempotency.md).

What was wrong: a claim in flight was compared by fingerprint before anything else, so a second
request with the same key and another body was answered 422 `idempotency_key_reused` while the
first was still running — even when the first then ended in a 400 and released the key. A merchant
whose client sent a malformed refund and, before that answer came, the corrected one under the same
key (a retry loop that fixes the body) was told the key was spent with other parameters: the
corrected refund was never made, and nothing had been made under the key. For POST /v1/payments
(the key claimed with the work) the invalid request still inserted and deleted a claim row after its
400, so the valid payment racing it could find that row and get the same 422.

Now a claim in flight answers 409 `idempotency_key_in_use` whatever the body (its outcome is not
known yet: stored → 422 afterwards, released → the retry runs), and a payment refused before any
work, its key unused, answers its 400 without inserting a claim at all. Real threads and row locks
on PostgreSQL.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from payera.idempotency.models import IdempotencyKey
from payments.models import Payment, Refund
from tests.conftest import client_for
from tests.helpers import held_open, race
from tests.merchants.factories import MerchantFactory, make_api_key

pytestmark = pytest.mark.django_db(transaction=True)

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def _post(secret: str, path: str, body: dict, key: str):
    from django.db import connection

    try:
        return client_for(secret).post(
            path, data=json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
        )
    finally:
        if threading.current_thread() is not threading.main_thread():
            connection.close()


def test_a_refund_racing_an_invalid_one_under_its_key_is_never_refused_as_a_reused_key(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"])
    secret = make_api_key(merchant).secret
    paid = _post(secret, "/v1/payments", {"amount": 1000, "currency": "EUR", "payment_method_data": CARD}, "pay")
    assert paid.status_code == 201 and paid.json()["status"] == "succeeded", paid.content
    payment_id = paid.json()["id"]
    invalid = {"payment": payment_id, "amount": 5000}  # more than was captured: 400 under the payment's lock
    valid = {"payment": payment_id, "amount": 300}
    answers: dict[str, object] = {}

    def first() -> None:
        answers["invalid"] = _post(secret, "/v1/refunds", invalid, "refund-key")

    # the payment's row held by another transaction: the invalid refund claims its key, then waits
    with held_open(lambda: Payment.objects.select_for_update().get(pk=payment_id)):
        thread = threading.Thread(target=first)
        thread.start()
        deadline = time.monotonic() + 30
        while not IdempotencyKey.objects.filter(merchant=merchant, key="refund-key").exists():
            assert time.monotonic() < deadline, "the first refund never claimed its key"
            time.sleep(0.01)
        during = _post(secret, "/v1/refunds", valid, "refund-key")
    thread.join(30)

    refused = answers["invalid"]
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "amount_too_large", refused.content
    # while the invalid one ran, its outcome was unknown: "in use, retry", not "reused" for good
    assert during.status_code == 409, during.content
    assert during.json()["error"]["code"] == "idempotency_key_in_use"
    assert not Refund.objects.filter(merchant=merchant).exists()
    # the 400 released the key: the corrected refund runs with it, once
    retry = _post(secret, "/v1/refunds", valid, "refund-key")
    assert retry.status_code == 201 and retry.json()["amount"] == 300, retry.content
    assert Refund.objects.filter(merchant=merchant).count() == 1
    # and a stored answer still refuses another body for good
    other = _post(secret, "/v1/refunds", invalid, "refund-key")
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"


ROUNDS = 12


def test_a_payment_racing_an_invalid_one_under_its_key_is_made(psp_settings):
    """POST /v1/payments claims its key with its work; an invalid twin (400 before any work) sent at the
    same instant under the same key must not take the valid one's key, even for a moment."""
    merchant = MerchantFactory(connectors=["alpha"])
    secret = make_api_key(merchant).secret
    valid = {"amount": 1000, "currency": "EUR", "payment_method_data": CARD}
    invalid = {
        "amount": 1000,
        "currency": "EUR",
        "payment_method_data": {"type": "card", "card": {**CARD["card"], "number": "4242424242424241"}},
    }  # fails the Luhn check: 400 before any work
    outcomes = []
    for n in range(ROUNDS):
        key = f"race-{n}"
        bodies = iter([invalid, valid])
        lock = threading.Lock()

        def one(key=key, bodies=bodies, lock=lock):
            with lock:
                body = next(bodies)
            return body is valid, _post(secret, "/v1/payments", body, key)

        for is_valid, response in race(2, one):
            if is_valid:
                outcomes.append((response.status_code, response.json().get("error", {}).get("code")))
            else:
                assert response.status_code in (400, 409, 422), response.content
    made = Payment.objects.filter(merchant=merchant).count()
    assert outcomes == [(201, None)] * ROUNDS, outcomes
    assert made == ROUNDS
