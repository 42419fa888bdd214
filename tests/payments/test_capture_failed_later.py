"""A capture the PSP answered `pending` (or whose answer was lost) and then refused.

The capture request answers 200 with the payment still `requires_capture` and the merchant waits
for `payment.captured` (docs/api.md). When the PSP's refusal arrived later (its webhook, recovery's
inquiry), the capture was marked `failed` and nothing told the merchant: no event, and the payment
object looks exactly as while the capture was under way — the merchant waited for a capture that
would never come (and the authorization expired unused). Now such a failure sends
`payment.capture_failed` (the payment object, `requires_capture` again: capture it again or cancel).

The PSP is a stand-in for alpha (alpha's wire format; a PSP is outside the machine) that answers a
capture `pending` and reports it `failed` when asked.
"""

from __future__ import annotations

import itertools

import pytest

from payera.events.models import Event
from payments.models import PS, OperationStatus, Payment
from payments.services import payment_capture, payment_create, recovery_run
from tests.helpers import psp_at, standin_psp
from tests.merchants.factories import MerchantFactory

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


class CaptureRefusedLaterAlpha:
    """Alpha's wire format: authorizes; a capture is answered `pending`, then reported `failed`."""

    def __init__(self) -> None:
        self.auths: dict[str, dict] = {}
        self._ids = itertools.count(1)

    def __call__(self, method: str, path: str, body: dict | None):
        if method == "POST" and path == "/v1/authorizations":
            auth = {"object": "authorization", "id": f"auth_X{next(self._ids)}",
                    "merchant_reference": body["merchant_reference"], "status": "authorized",
                    "amount": body["amount"], "currency": body["currency"], "amount_captured": 0,
                    "amount_refunded": 0, "response_code": None, "response_message": None, "challenge": None,
                    "card": {"last4": "4242"}, "network_transaction_id": None, "card_token": None,
                    "operations": [], "created": "2026-01-01T00:00:00Z"}
            self.auths[auth["id"]] = auth
            return 201, auth
        parts = path.split("?")[0].split("/")
        auth = self.auths.get(parts[3]) if len(parts) > 3 else None
        if auth is None:
            return 404, {"error": {"code": "not_found", "message": "No such authorization."}}
        if method == "GET":
            return 200, auth
        op = {"object": "operation", "id": f"op_{next(self._ids)}", "type": "capture",
              "authorization_id": auth["id"], "authorization_reference": auth["merchant_reference"],
              "merchant_reference": body["merchant_reference"], "amount": body["amount"],
              "currency": auth["currency"], "status": "pending", "response_code": None,
              "response_message": None, "created": "2026-01-01T00:00:00Z"}
        auth["operations"].append({**op, "status": "failed", "response_code": "05",
                                   "response_message": "Capture refused"})
        return 201, op


def test_a_capture_the_psp_refuses_after_answering_pending_is_told_to_the_merchant(psp_settings, settings):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["alpha"])
    with standin_psp(CaptureRefusedLaterAlpha()) as (url, _):
        psp_at(settings, "alpha", url)
        payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD,
                                 capture_method="manual")
        assert payment.status == PS.REQUIRES_CAPTURE
        answered = payment_capture(merchant=merchant, payment_id=payment.id)
        assert answered.status == PS.REQUIRES_CAPTURE  # under way: the merchant waits for its outcome
        assert not Event.objects.filter(merchant_id=merchant.id, type="payment.capture_failed").exists()

        recovery_run(force=True)  # the PSP says: refused
        payment = Payment.objects.get(pk=payment.id)
        assert payment.captures.get().status == OperationStatus.FAILED
        assert payment.status == PS.REQUIRES_CAPTURE
        [event] = Event.objects.filter(merchant_id=merchant.id, type="payment.capture_failed")
        assert (event.data["object"]["id"], event.data["object"]["status"]) == (payment.id, "requires_capture")

        recovery_run(force=True)  # told once
        assert Event.objects.filter(merchant_id=merchant.id, type="payment.capture_failed").count() == 1
