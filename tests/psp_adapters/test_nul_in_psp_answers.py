"""A NUL character in a PSP's answer is stored as U+FFFD, never a 500.

What was wrong: PostgreSQL's text and jsonb hold no NUL. An answer of the PSP carrying `\\u0000` in
a text it gives (a decline message, an error message) reached the attempt's insert or update and
failed there: the merchant got a 500 after the PSP had answered, and the attempt stayed `started`.
An answer to our own call can not be refused, so `PspHttp` replaces the character (and a lone
UTF-16 surrogate, which PostgreSQL can not hold either) in every string of the answer. A stand-in for alpha (a PSP is
outside the machine) answers with the character."""

from __future__ import annotations

import json

import pytest

from payments.models import PS, Payment
from tests.conftest import client_for
from tests.helpers import psp_at, standin_psp
from tests.merchants.factories import MerchantFactory, make_api_key

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


@pytest.fixture
def alpha_with_nul(settings, psp_settings):
    """Alpha answering each authorization with the next of `answers`: 201 (the request's reference,
    amount and currency added) or an error status, a NUL in its texts."""
    answers = []

    def answer(method, path, sent):
        status, body = answers.pop(0)
        if status == 201:
            body = {**body, **{k: sent[k] for k in ("merchant_reference", "amount", "currency")}}
        return status, body

    with standin_psp(answer) as (url, _):
        psp_at(settings, "alpha", url)
        yield answers


def test_a_decline_message_with_a_nul_is_a_declined_payment(alpha_with_nul):
    alpha_with_nul.append((201, {"id": "auth_nul1", "status": "declined", "response_code": "do_not_honour",
                                 "response_message": "Do not\u0000 honour"}))  # fmt: skip
    client = client_for(make_api_key(MerchantFactory(connectors=["alpha"])).secret)
    r = client.post("/v1/payments", {"amount": 1000, "currency": "EUR", "payment_method_data": CARD}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["status"] == "failed"
    payment = Payment.objects.get(pk=r.json()["id"])
    assert payment.status == PS.FAILED and "\x00" not in json.dumps(r.json())


def test_an_error_message_with_a_nul_is_answered_as_the_psps_refusal(alpha_with_nul):
    alpha_with_nul.append((402, {"error": {"code": "card_declined\u0000", "message": "refused\u0000 here"}}))
    client = client_for(make_api_key(MerchantFactory(connectors=["alpha"])).secret)
    r = client.post("/v1/payments", {"amount": 1000, "currency": "EUR", "payment_method_data": CARD}, format="json")
    assert r.status_code in (201, 402), r.content
    assert "\x00" not in r.content.decode()


def test_a_decline_message_with_a_lone_surrogate_is_a_declined_payment(alpha_with_nul):
    """JSON's `"\\ud800"` (half of a UTF-16 pair) reads as a lone surrogate, which PostgreSQL's text
    and jsonb can not hold either: the answer's recording failed (500, the attempt left `started`)."""
    alpha_with_nul.append((201, {"id": "auth_sur1", "status": "declined", "response_code": "do_not_honour",
                                 "response_message": "Do not\ud800 honour \ud83d\ude00"}))  # fmt: skip
    client = client_for(make_api_key(MerchantFactory(connectors=["alpha"])).secret)
    r = client.post("/v1/payments", {"amount": 1000, "currency": "EUR", "payment_method_data": CARD}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["status"] == "failed"
    message = r.json()["last_error"]["message"]
    assert "\ufffd" in message and "\U0001f600" in message  # a lone half replaced, a whole pair kept
    assert Payment.objects.get(pk=r.json()["id"]).status == PS.FAILED


def test_an_error_message_with_a_lone_surrogate_is_answered_as_the_psps_refusal(alpha_with_nul):
    alpha_with_nul.append((402, {"error": {"code": "card_declined\ud800", "message": "refused\udfff here"}}))
    client = client_for(make_api_key(MerchantFactory(connectors=["alpha"])).secret)
    r = client.post("/v1/payments", {"amount": 1000, "currency": "EUR", "payment_method_data": CARD}, format="json")
    assert r.status_code in (201, 402), r.content
