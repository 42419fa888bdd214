"""A PSP webhook correctly signed but with a body Payera cannot read is a clear 400
(`invalid_webhook_payload`) from `POST /webhooks/psp/<connector>/`, never a 500: the PSP retries a
5xx for days, and a 400 tells its operators (and ours, from the log) what is wrong."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from django.test import Client

from payments.models import PspWebhook

pytestmark = pytest.mark.django_db


def _post(connector: str, body: bytes, **headers: str):
    # the test client re-raises a view's exception by default: answer as the server would
    client = Client(raise_request_exception=False)
    return client.post(f"/webhooks/psp/{connector}/", data=body, content_type="application/json", headers=headers)


def _alpha_signed(secret: str, event: dict) -> tuple[bytes, str]:
    body = json.dumps(event).encode()
    return body, hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _beta_signed(secret: str, event: dict) -> tuple[bytes, str]:
    body = json.dumps(event).encode()
    ts = int(time.time())
    sig = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"ts={ts},sig={sig}"


@pytest.mark.parametrize(
    "event",
    [
        # `created` is parsed outside the adapter's error handling
        {
            "id": "evt_bad_created",
            "type": "authorization.updated",
            "created": "yesterday",
            "data": {
                "id": "auth_X",
                "merchant_reference": "att_x",
                "status": "authorized",
                "amount": 1000,
                "currency": "EUR",
            },
        },
        {
            "id": "evt_int_created",
            "type": "authorization.updated",
            "created": 1763800000,
            "data": {
                "id": "auth_X",
                "merchant_reference": "att_x",
                "status": "authorized",
                "amount": 1000,
                "currency": "EUR",
            },
        },
        # an id that is not a string was stored as `event_id[:128]`
        {
            "id": 12345,
            "type": "authorization.updated",
            "created": "2026-11-23T00:00:00Z",
            "data": {
                "id": "auth_X",
                "merchant_reference": "att_x",
                "status": "authorized",
                "amount": 1000,
                "currency": "EUR",
            },
        },
    ],
    ids=["created-not-a-date", "created-not-a-string", "id-not-a-string"],
)
def test_a_signed_malformed_alpha_body_is_400_not_500(psp_settings, event):
    """What alpha signed but Payera cannot read is 400 `invalid_webhook_payload`, as other
    unreadable events already were; these ones raised outside the adapter's checks (500)."""
    body, signature = _alpha_signed(psp_settings["alpha"].webhook_secret, event)
    r = _post("alpha", body, **{"X-Alpha-Signature": signature})
    assert r.status_code == 400, r.content
    assert not PspWebhook.objects.exists()


@pytest.mark.parametrize(
    "patch",
    [
        {"additionalData": "not an object"},
        {"merchantReference": 42},
        {"pspReference": ["BPX"]},
        {"success": "false", "reasonCode": "51\u0000", "reason": "Refused"},
        {"eventId": "BE-\u0000"},
    ],
    ids=[
        "additionalData-not-an-object",
        "merchantReference-not-a-string",
        "pspReference-not-a-string",
        "nul-in-reason-code",
        "nul-in-event-id",
    ],
)
def test_a_signed_malformed_beta_body_is_400_not_500(psp_settings, patch):
    """Beta's parser caught KeyError/TypeError/ValueError only: `additionalData` that is not an
    object raised AttributeError, and references that are not strings reached the inbox
    (`reference[:64]`, a varchar) — each a 500; so was a `\u0000` in any value (PostgreSQL's text
    and jsonb hold no NUL character). A NUL in an id, a reference or a code stays a 400; one in the
    free text is kept as U+FFFD (tests/scenarios/test_webhook_nul_text.py)."""
    event = {
        "eventId": "BE-malformed",
        "eventCode": "AUTHORISATION",
        "success": "true",
        "eventDate": "2026-11-23T00:00:00Z",
        "amount": {"value": "10.00", "currency": "EUR"},
        "merchantReference": "att_x",
        "pspReference": "BPX1",
        "additionalData": {},
    } | patch
    body, signature = _beta_signed(psp_settings["beta"].webhook_secret, event)
    r = _post("beta", body, **{"Beta-Signature": signature})
    assert r.status_code == 400, r.content
    assert not PspWebhook.objects.exists()
