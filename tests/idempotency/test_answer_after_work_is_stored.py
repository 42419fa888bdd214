"""A 400 answered after work began is stored and replayed under its Idempotency-Key.

What was wrong (found in review): the idempotency layer decided "nothing was done" from the status
alone (every 400 released the key), so a booking completion that refunded, was refused by the PSP
and answered 400 `booking_refund_failed` ran again — a second refund — on the retry with its key.
Now the request's work is watched (payera.core.work): a 400 releases the key only when the request
did nothing.

CONTRACT "Requests": "a request rejected by validation (400) is not stored ... any answer after
work began (including a 5xx) is stored and replayed"; docs/api.md ("adding a merchant endpoint",
rule 3): "Services raise 400 errors only before their first write: a 400 releases the idempotency
key." POST /v1/bookings/{id}/complete with a partial amount first refunds the rest out of escrow
(a Refund row, a PSP call, a `refund.failed` event) and, when that refund is refused, answers 400
`booking_refund_failed` (payments/services/bookings.py `_escrow_refund`). The key is then released
(payera/core/idempotency.py NOT_STORED_STATUSES), so the same key with the same body runs the
completion again: a second refund at the PSP and another answer — two effects under one key."""

from __future__ import annotations

import copy
import json
import time

import pytest

from payments.models import Booking, Refund
from psp_adapters.registry import adapters_reset
from tests.helpers import free_port

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def post(client, url, body, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(url, data=json.dumps(body), content_type="application/json", **headers)


def test_a_booking_completion_whose_refund_was_refused_is_replayed_not_run_again(
    make_merchant_client, psp_settings, settings
):
    merchant, client = make_merchant_client(connectors=["alpha"])
    booking = post(
        client,
        "/v1/bookings",
        {
            "amount": 10000,
            "currency": "EUR",
            "payment_method_data": CARD,
            "reference": "stay-1",
            "hold_expires_at": int(time.time()) + 3600,
        },
    )
    assert booking.status_code == 201 and booking.json()["status"] == "held", booking.content
    bk = booking.json()["id"]
    assert post(client, f"/v1/bookings/{bk}/confirm", {}).json()["status"] == "confirmed"

    up = copy.deepcopy(settings.PSP_CONNECTORS)
    down = copy.deepcopy(up)
    down["alpha"]["OPTIONS"]["base_url"] = f"http://127.0.0.1:{free_port()}"  # alpha unreachable
    settings.PSP_CONNECTORS = down
    adapters_reset()
    first = post(client, f"/v1/bookings/{bk}/complete", {"amount": 6000}, key="complete-1")
    assert first.status_code == 400 and first.json()["error"]["code"] == "booking_refund_failed", first.content
    assert Refund.objects.filter(payment_id=booking.json()["payment"]).count() == 1  # work was done

    settings.PSP_CONNECTORS = up  # alpha is back
    adapters_reset()
    again = post(client, f"/v1/bookings/{bk}/complete", {"amount": 6000}, key="complete-1")
    refunds = list(Refund.objects.filter(payment_id=booking.json()["payment"]).values_list("status", flat=True))
    assert len(refunds) == 1, f"the same key made a second refund: {refunds}, answered {again.status_code}"
    assert again.get("Idempotent-Replayed") == "true"
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert Booking.objects.get(pk=bk).status == "confirmed"


def test_a_400_before_any_work_still_releases_the_key(make_merchant_client, psp_settings):
    """The other half of the contract: a request refused before any work is not stored, and its key
    runs the corrected request."""
    _, client = make_merchant_client(connectors=["alpha"])
    bad = post(client, "/v1/payments", {"amount": 1000, "currency": "EUR"}, key="fix-me")
    assert bad.status_code == 400, bad.content
    good = post(client, "/v1/payments", {"amount": 1000, "currency": "EUR", "payment_method_data": CARD}, key="fix-me")
    assert good.status_code == 201 and good.get("Idempotent-Replayed") != "true", good.content
