"""A card number that a merchant sends where none belongs (a cursor, a status, free text) is never
echoed back, stored, sent on in events and webhooks, or shown in the back office: error answers
and what the API stores are masked as log lines are (docs/decisions/0004-logs-and-masking.md)."""

from __future__ import annotations

import json

import pytest

from tests.backoffice.leaks import leaks

pytestmark = pytest.mark.django_db

PAN = "4111111111111111"
MASKED = "411111******1111"


def _error(response) -> dict:
    assert 400 <= response.status_code < 500, response.content
    return response.json()["error"]


def test_error_answers_quoting_the_input_never_echo_a_card_number(make_merchant_client):
    _, client = make_merchant_client()
    endpoint = client.post(
        "/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]}, format="json"
    ).json()["id"]
    answers = [
        client.get("/v1/payments", {"starting_after": PAN}),  # "No such object for starting_after: '…'"
        client.get("/v1/balance_transactions", {"starting_after": f"txn_{PAN}"}),
        client.post(f"/v1/webhook_endpoints/{endpoint}", {"status": PAN}, format="json"),  # DRF's invalid choice
        client.post(f"/v1/webhook_endpoints/{endpoint}", {"enabled_events": [PAN]}, format="json"),
        client.post("/v1/customers", {"metadata": {PAN: 1}}, format="json"),  # metadata[<key>]
    ]
    for response in answers:
        error = _error(response)
        text = json.dumps(error)
        assert leaks(text) == [], text
        assert MASKED in text, text  # still says which value was wrong, as far as it may


CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def test_a_card_number_in_free_text_is_masked_before_it_is_stored_answered_or_sent(make_merchant_client, psp_settings):
    """Description, metadata (keys and values), return_url, a customer's name, a refund's reason:
    the number is masked at the API's door, so neither the answer, the rows, the events (webhook
    payloads) nor the audit trail hold it; the card paid with (payment_method_data) still works."""
    from payera.audit.models import AuditLogEntry
    from payera.events.models import Event
    from payments.models import Customer, Payment, Refund

    merchant, client = make_merchant_client(connectors=["alpha"])
    spaced = "4111 1111 1111 1111"
    customer = client.post("/v1/customers", {"name": f"card {spaced}"}, format="json")
    assert customer.status_code == 201, customer.content
    created = client.post(
        "/v1/payments",
        {
            "amount": 1000,
            "currency": "EUR",
            "payment_method_data": CARD,
            "customer": customer.json()["id"],
            "description": f"order paid with {PAN}",
            "metadata": {"note": f"card={PAN}", PAN: "as a key"},
            "return_url": f"https://shop.example/return?card={PAN}",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    payment = created.json()
    assert payment["status"] == "succeeded"  # the real card, in payment_method_data, was charged
    assert payment["payment_method"]["card"]["last4"] == "4242"
    refund = client.post("/v1/refunds", {"payment": payment["id"], "amount": 100, "reason": PAN}, format="json")
    assert refund.status_code == 201, refund.content

    assert payment["description"] == f"order paid with {MASKED}"
    assert payment["metadata"] == {"note": f"card={MASKED}", MASKED: "as a key"}
    assert payment["return_url"] == f"https://shop.example/return?card={MASKED}"
    texts = {
        "answers": customer.content.decode() + created.content.decode() + refund.content.decode(),
        "payment row": json.dumps(
            list(Payment.objects.filter(merchant=merchant).values("description", "metadata", "return_url"))
        ),
        "customer row": json.dumps(list(Customer.objects.filter(merchant=merchant).values("name"))),
        "refund row": json.dumps(list(Refund.objects.filter(merchant=merchant).values("reason")), default=str),
        "events": json.dumps([e.data for e in Event.objects.filter(merchant_id=merchant.id)]),
        "audit trail": json.dumps([e.changes for e in AuditLogEntry.objects.all()], default=str),
    }
    assert Event.objects.filter(merchant_id=merchant.id).count() >= 2  # payment.succeeded, refund.*
    for where, text in texts.items():
        assert leaks(text) == [], where


def test_a_card_number_in_a_holder_name_is_masked_but_the_iban_is_kept(make_merchant_client, psp_settings):
    """Inside payment_method_data only the account number itself (a card's number, a SEPA IBAN) is
    left as sent: an account holder's name holding a card number is masked like any free text."""
    from payments.models import PaymentMethod

    merchant, client = make_merchant_client(connectors=["beta"])
    sepa = {"type": "sepa_debit",
            "sepa_debit": {"iban": "DE89370400440532013000", "account_holder_name": f"Ada {PAN}"}}  # fmt: skip
    response = client.post("/v1/payments", {"amount": 700, "currency": "EUR", "payment_method_data": sepa},
                           format="json")  # fmt: skip
    assert response.status_code == 201, response.content
    assert response.json()["payment_method"]["sepa_debit"]["last4"] == "3000"
    pm = PaymentMethod.objects.get(merchant=merchant)
    assert pm.account_holder_name == f"Ada {MASKED}"
