"""A PSP webhook whose signature header is garbage is a bad signature — 400 from
`POST /webhooks/psp/<connector>/` and a security record — never a 500: the endpoint is public, so
a 500 there is a server error anyone on the internet can raise at will."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from payera.audit.models import SecurityEvent
from payments.models import PspWebhook

pytestmark = pytest.mark.django_db


def _post(connector: str, body: bytes, **headers: str):
    # the test client re-raises a view's exception by default: answer as the server would
    client = Client(raise_request_exception=False)
    return client.post(f"/webhooks/psp/{connector}/", data=body, content_type="application/json", headers=headers)


# The header values are str as WSGI gives them (latin-1 decoded bytes): "é" is b"\xe9" on the wire.
@pytest.mark.parametrize(
    ("connector", "header", "value"),
    [
        ("alpha", "X-Alpha-Signature", "é" * 64),
        ("beta", "Beta-Signature", f"ts={int(time.time())},sig={'é' * 64}"),
        ("beta", "Beta-Signature", "ts=²,sig=00"),
    ],
    ids=["alpha-non-ascii-sig", "beta-non-ascii-sig", "beta-unicode-digit-ts"],
)
def test_a_non_ascii_signature_header_is_400_not_500(psp_settings, connector, header, value):
    """`hmac.compare_digest` raises TypeError on a str with a non-ASCII character, and beta's
    timestamp check took `"²".isdigit()` (True) for a number `int()` then refused: an unsigned
    request with such a header was a 500. Now it is a bad signature: 400, recorded, nothing stored."""
    r = _post(connector, b'{"id": "x", "eventId": "x", "eventCode": "AUTHORISATION", "data": {}}', **{header: value})
    assert r.status_code == 400, r.content
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert not PspWebhook.objects.exists()
    assert SecurityEvent.objects.filter(kind="psp_webhook", identifier=connector).exists()
