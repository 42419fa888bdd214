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
