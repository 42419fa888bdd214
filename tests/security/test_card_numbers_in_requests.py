"""A card number that a merchant sends where none belongs (a cursor, a status, free text) is never
echoed back, stored, sent on in events and webhooks, or shown in the back office: the merchant
API refuses a body holding one outside the account number of payment_method_data (as a booking's
reference already was), and error answers that quote the request mask it as log lines are
(docs/decisions/0004-logs-and-masking.md)."""

from __future__ import annotations

import json

import pytest

from tests.backoffice.leaks import leaks

pytestmark = pytest.mark.django_db

PAN = "4111111111111111"
MASKED = "411111******1111"
CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def _error(response) -> dict:
    assert 400 <= response.status_code < 500, response.content
    return response.json()["error"]


def test_error_answers_quoting_the_input_never_echo_a_card_number(make_merchant_client):
    _, client = make_merchant_client()
    quoting = [  # "No such object for starting_after: '…'"
        client.get("/v1/payments", {"starting_after": PAN}),
        client.get("/v1/balance_transactions", {"starting_after": f"txn_{PAN}"}),
    ]
    for response in quoting:
        text = json.dumps(_error(response))
        assert leaks(text) == [], text
        assert MASKED in text, text  # still says which value was wrong, as far as it may


def test_a_card_number_outside_payment_method_data_is_refused_and_never_kept(make_merchant_client, psp_settings):
    """Description, metadata (keys and values), return_url, a customer's name, a refund's reason,
    a webhook endpoint's status or events, an account holder's name: 400 naming the param, before
    anything is written or sent — no row, event (webhook payload) or audit entry holds the number.
    The card paid with (payment_method_data[card][number]) and a SEPA IBAN still work."""
    from payera.audit.models import AuditLogEntry
    from payera.events.models import Event
    from payments.models import Customer, Payment, Refund

    merchant, client = make_merchant_client(connectors=["alpha"])
    endpoint = client.post("/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]},
                           format="json").json()["id"]  # fmt: skip
    paid = client.post("/v1/payments", {"amount": 1000, "currency": "EUR", "payment_method_data": CARD},
                       format="json")  # fmt: skip
    assert paid.status_code == 201 and paid.json()["status"] == "succeeded", paid.content
    pay = {"amount": 1000, "currency": "EUR", "payment_method_data": CARD}
    sepa = {"type": "sepa_debit", "sepa_debit": {"iban": "DE89370400440532013000", "account_holder_name": PAN}}
    refused = {
        "description": ("/v1/payments", {**pay, "description": f"order paid with {PAN}"}),
        "metadata[note]": ("/v1/payments", {**pay, "metadata": {"note": f"card={PAN}"}}),
        "metadata": ("/v1/payments", {**pay, "metadata": {PAN: "as a key"}}),
        "return_url": ("/v1/payments", {**pay, "return_url": f"https://shop.example/return?card={PAN}"}),
        "payment_method_data[card][name]": (
            "/v1/payments", {**pay, "payment_method_data": {**CARD, "card": {**CARD["card"], "name": PAN}}}),
        "payment_method_data[sepa_debit][account_holder_name]": (
            "/v1/payments", {**pay, "payment_method_data": sepa}),
        "name": ("/v1/customers", {"name": "card 4111 1111 1111 1111"}),
        "reason": ("/v1/refunds", {"payment": paid.json()["id"], "amount": 100, "reason": PAN}),
        "status": (f"/v1/webhook_endpoints/{endpoint}", {"status": PAN}),
        "enabled_events[0]": (f"/v1/webhook_endpoints/{endpoint}", {"enabled_events": [PAN]}),
    }  # fmt: skip
    answers = []
    for param, (url, body) in refused.items():
        response = client.post(url, body, format="json")
        answers.append(response.content.decode())
        error = _error(response)
        assert response.status_code == 400 and error["param"] == param, (param, response.content)
        assert "must not contain a card number" in error["message"]
    assert Payment.objects.filter(merchant=merchant).count() == 1
    assert not Customer.objects.filter(merchant=merchant).exists()
    assert not Refund.objects.filter(merchant=merchant).exists()
    texts = {
        "answers": "".join(answers),
        "payment rows": json.dumps(list(Payment.objects.filter(merchant=merchant).values(
            "description", "metadata", "return_url"))),
        "events": json.dumps([e.data for e in Event.objects.filter(merchant_id=merchant.id)]),
        "audit trail": json.dumps([e.changes for e in AuditLogEntry.objects.all()], default=str),
    }  # fmt: skip
    for where, text in texts.items():
        assert leaks(text) == [], where


def test_the_iban_of_a_sepa_debit_is_not_taken_for_a_card_number(make_merchant_client, psp_settings):
    """The account numbers themselves pass: a SEPA IBAN whose digits happen to pass the Luhn check
    (AT..: 18 digits) is no card number in the wrong place."""
    from payera.core.masking import has_card_number

    iban = "AT304323194875749118"
    assert has_card_number(iban)  # its check digits and account: a Luhn-valid run of 18 digits
    _, client = make_merchant_client(connectors=["beta"])
    sepa = {"type": "sepa_debit", "sepa_debit": {"iban": iban, "account_holder_name": "Ada Lovelace"}}
    response = client.post("/v1/payments", {"amount": 700, "currency": "EUR", "payment_method_data": sepa},
                           format="json")  # fmt: skip
    assert response.status_code == 201, response.content
