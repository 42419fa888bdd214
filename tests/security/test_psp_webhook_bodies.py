"""A PSP webhook whose body carries a card number (a PSP that sends the card back) is kept in the
inbox masked: the stored copy is for people to read (the back office's PSP inbox page); the event
is applied from what the adapter parsed, so nothing else changes."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.contrib.admin.utils import quote

from tests.backoffice.leaks import leaks
from tests.backoffice.staff import make_staff, otp_force_login

pytestmark = pytest.mark.django_db

PAN = "4111111111111111"


def test_a_psp_webhook_quoting_the_card_is_stored_and_shown_masked(client, psp_settings):
    from payments.services import psp_webhook_receive

    body = json.dumps({"id": "evt_card_echo", "type": "authorization.updated", "created": "2026-11-23T00:00:00Z",
                       "data": {"id": "auth_ECHO", "merchant_reference": "att_echo", "status": "authorized",
                                "amount": 1000, "currency": "EUR", "card": {"number": PAN, "cvc": "737"},
                                "description": f"card {PAN}"}}).encode()  # fmt: skip
    signature = hmac.new(psp_settings["alpha"].webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    row = psp_webhook_receive(connector="alpha", body=body, headers={"X-Alpha-Signature": signature})
    row.refresh_from_db()
    assert row.event_id == "evt_card_echo" and row.reference == "att_echo"  # parsed from the real body
    assert leaks(row.body) == [] and "411111******1111" in row.body
    assert "737" not in row.body
    otp_force_login(client, make_staff("root", superuser=True))
    page = client.get(f"/admin/payments/pspwebhook/{quote(row.pk)}/change/")
    assert page.status_code == 200 and leaks(page.content.decode()) == []


def test_a_json_webhook_body_is_masked_in_its_structure_and_stays_json(psp_settings):
    """A sensitive key whose value is an object was masked as text into invalid JSON
    (`"token": {"a": 1}` became `"token": "***""a": 1}`): the parsed body is masked and serialized."""
    from payments.services import psp_webhook_receive

    body = json.dumps({"id": "evt_token_echo", "type": "authorization.updated", "created": "2026-11-23T00:00:00Z",
                       "data": {"id": "auth_TOKEN", "merchant_reference": "att_token", "status": "authorized",
                                "amount": 1000, "currency": "EUR", "token": {"a": 1, "b": [PAN]},
                                "description": f"qty 1 {PAN}"}}).encode()  # fmt: skip
    signature = hmac.new(psp_settings["alpha"].webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    row = psp_webhook_receive(connector="alpha", body=body, headers={"X-Alpha-Signature": signature})
    row.refresh_from_db()
    stored = json.loads(row.body)
    assert stored["data"]["token"] == "***" and stored["data"]["description"] == "qty 1 411111******1111"
    assert stored["id"] == "evt_token_echo" and leaks(row.body) == []
