"""An automatic-capture payment whose capture could not be sent is captured later.

A PSP may authorize an automatic-capture payment without capturing it (an authorize-only account,
or the outcome learned from an inquiry): Payera then captures it itself
(`payment_auto_capture_if_needed`). If that capture failed — the PSP unreachable for a moment (a
503), a crash between the authorization and the capture — the payment stayed `requires_capture`
for good: nothing tried again, and seven days later the authorization expiry voided it. The
merchant, who asked for an automatic capture, lost the sale. Recovery now captures such a payment
again (`recovery_run`, on the recovery schedule after each failed capture; once per payment).

The PSP is a stand-in for alpha (alpha's wire format; a PSP is outside the machine) that
authorizes without capturing and refuses the first capture with a 503.
"""

from __future__ import annotations

import itertools
import threading

import pytest

from ledger.models import Journal
from payera.events.models import Event
from payments.models import PS, OperationStatus, Payment
from payments.services import payment_create, recovery_run
from tests.helpers import psp_at, standin_psp
from tests.merchants.factories import MerchantFactory

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


class AuthorizeOnlyAlpha:
    """Alpha's wire format: authorizes, never captures at authorization; the first `refuse`
    captures are answered 503 (nothing processed)."""

    def __init__(self, refuse: int) -> None:
        self.refuse = refuse
        self.auths: dict[str, dict] = {}
        self.captures = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def _op(self, auth: dict, body: dict) -> dict:
        return {"object": "operation", "id": f"op_{next(self._ids)}", "type": "capture",
                "authorization_id": auth["id"], "authorization_reference": auth["merchant_reference"],
                "merchant_reference": body["merchant_reference"], "amount": body["amount"],
                "currency": auth["currency"], "status": "succeeded", "response_code": None,
                "response_message": None, "created": "2026-01-01T00:00:00Z"}

    def __call__(self, method: str, path: str, body: dict | None):
        with self._lock:
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
            if parts[4:] == ["capture"]:
                self.captures += 1
                if self.captures <= self.refuse:
                    return 503, {"error": {"code": "unavailable", "message": "Try again later."}}
                done = [o for o in auth["operations"] if o["merchant_reference"] == body["merchant_reference"]]
                if done:
                    return 200, done[0]
                op = self._op(auth, body)
                auth["operations"].append(op)
                auth.update(status="captured", amount_captured=body["amount"])
                return 201, op
            return 400, {"error": {"code": "unsupported", "message": path}}


def test_an_automatic_capture_the_psp_refused_for_a_moment_is_captured_by_recovery(psp_settings, settings):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["alpha"])
    psp = AuthorizeOnlyAlpha(refuse=1)
    with standin_psp(psp) as (url, _):
        psp_at(settings, "alpha", url)
        payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
        # authorized; the automatic capture met a 503: nothing captured, the payment waits
        assert payment.status == PS.REQUIRES_CAPTURE and psp.captures == 1
        assert payment.captures.get().status == OperationStatus.FAILED

        recovery_run()  # on its schedule: not again within 15 s of the failed capture
        assert psp.captures == 1
        recovery_run(force=True)
        payment = Payment.objects.get(pk=payment.id)
        assert (payment.status, payment.amount_captured) == (PS.SUCCEEDED, 1000)
        assert psp.captures == 2
        [attempt] = payment.attempts.all()
        assert Journal.objects.filter(reference=f"capture:{attempt.id}").count() == 1
        assert Event.objects.filter(merchant_id=merchant.id, type="payment.succeeded").count() == 1

        recovery_run(force=True)  # captured: nothing more is sent
        assert psp.captures == 2
