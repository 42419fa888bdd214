"""Two PSP events whose ids share their first 128 characters are two events, not a repeat.

What was wrong: the inbox keeps the PSP's event id in a 128-character column, unique per
connector, and stored `event_id[:128]`: a second, different event whose id began as the first's
was answered 200 as a repeat and never stored nor applied (its outcome left for recovery). An id
longer than the column is now kept as its start and a digest of the whole id."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.test import Client

from payments.models import PspWebhook

pytestmark = pytest.mark.django_db


def _post_alpha(secret: str, event: dict):
    body = json.dumps(event).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return Client(raise_request_exception=False).post(
        "/webhooks/psp/alpha/", data=body, content_type="application/json", headers={"X-Alpha-Signature": signature}
    )


def _event(event_id: str, reference: str) -> dict:
    return {
        "id": event_id,
        "type": "authorization.updated",
        "created": "2026-11-23T00:00:00Z",
        "data": {"id": "auth_X", "merchant_reference": reference, "status": "authorized", "amount": 1000,
                 "currency": "EUR"},
    }  # fmt: skip


def test_two_long_event_ids_sharing_their_start_are_two_events(psp_settings, monkeypatch):
    monkeypatch.setattr("payments.services.webhooks.enqueue", lambda *args, **kwargs: False)
    secret = psp_settings["alpha"].webhook_secret
    start = "evt_" + "x" * 150
    first, second = _event(start + "-first", "att_one"), _event(start + "-second", "att_two")
    assert _post_alpha(secret, first).status_code == 200
    assert _post_alpha(secret, second).status_code == 200
    rows = PspWebhook.objects.filter(connector="alpha").order_by("pk")
    assert [r.headers["event_id"] for r in rows] == [first["id"], second["id"]]
    # a repeat of either is still a repeat
    assert _post_alpha(secret, second).status_code == 200
    assert PspWebhook.objects.filter(connector="alpha").count() == 2


def test_a_repeat_of_a_long_id_stored_before_the_digest_is_still_a_repeat(psp_settings, monkeypatch):
    """Rows stored before the digest key kept `event_id[:128]`; a PSP's repeat of such an event
    (redelivered after the deploy) got the new key, was stored as a second row and applied again.
    A stored row under the old key whose event (headers) is this very id is the same event; one
    under that key with another full id (the case the digest fixed) is not."""
    from payments.services import webhooks

    monkeypatch.setattr("payments.services.webhooks.enqueue", lambda *args, **kwargs: False)
    secret = psp_settings["alpha"].webhook_secret
    start = "evt_" + "y" * 150
    old = _event(start + "-old", "att_old")
    with monkeypatch.context() as before:  # the inbox as it was: event_id[:128]
        before.setattr(webhooks, "_inbox_event_id", lambda event_id: event_id[:128])
        assert _post_alpha(secret, old).status_code == 200
    [stored] = PspWebhook.objects.filter(connector="alpha")
    assert stored.event_id == old["id"][:128]
    assert _post_alpha(secret, old).status_code == 200  # the PSP sends it again
    assert PspWebhook.objects.filter(connector="alpha").count() == 1
    other = _event(start + "-other", "att_other")  # shares the old row's key, another event
    assert _post_alpha(secret, other).status_code == 200
    rows = PspWebhook.objects.filter(connector="alpha").order_by("pk")
    assert [r.headers["event_id"] for r in rows] == [old["id"], other["id"]]
