"""A second capture while the first is still pending at an asynchronous PSP says so.

What was wrong: beta answers a capture "received"; the payment stays `requires_capture` (with its
`amount_capturable`) until beta's CAPTURE webhook or an inquiry confirms it. A second
`POST /v1/payments/{id}/capture` meanwhile was refused with 400 `payment_not_capturable` and the
message "This payment cannot be captured (it is not awaiting capture)" — contradicting the payment
object the same merchant had just been given (`requires_capture`), so a merchant had no way to tell
"already being captured, wait for payment.captured" from "this payment can never be captured".
The code stays `payment_not_capturable` (nothing is captured twice); the message now says a capture
is under way and that its outcome arrives as `payment.captured`.
"""

from __future__ import annotations

import pytest

from payments.models import PS, OperationStatus, Payment
from payments.services import attempt_recover
from tests.conftest import client_for
from tests.merchants.factories import MerchantFactory, make_api_key

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def test_a_capture_while_another_is_pending_says_it_is_under_way(psp_settings):
    merchant = MerchantFactory(connectors=["beta"])
    client = client_for(make_api_key(merchant).secret)
    r = client.post(
        "/v1/payments",
        {"amount": 1000, "currency": "EUR", "payment_method_data": CARD, "capture_method": "manual"},
        format="json",
    )
    assert r.status_code == 201, r.content
    payment = Payment.objects.get(pk=r.json()["id"])
    for _ in range(100):  # beta decides a moment later; its webhook, or recovery, tells us
        attempt_recover(attempt_id=payment.attempts.get().pk)
        payment.refresh_from_db()
        if payment.status == PS.REQUIRES_CAPTURE:
            break
    first = client.post(f"/v1/payments/{payment.pk}/capture", {"amount_to_capture": 600}, format="json")
    assert first.status_code == 200, first.content
    assert (first.json()["status"], first.json()["amount_capturable"]) == ("requires_capture", 1000)
    assert payment.captures.get().status == OperationStatus.PENDING

    second = client.post(f"/v1/payments/{payment.pk}/capture", {}, format="json")
    assert second.status_code == 400, second.content
    error = second.json()["error"]
    assert error["code"] == "payment_not_capturable"
    assert "under way" in error["message"] and "payment.captured" in error["message"], error
    assert payment.captures.count() == 1
