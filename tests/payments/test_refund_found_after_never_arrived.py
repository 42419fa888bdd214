"""A refund recovery marked `failed` because the PSP did not know it yet, that the PSP then made.

A refund whose request timed out is asked about after the grace period; a PSP that does not list
it (its request still queued behind a slow proxy, an inquiry answered from a lagging replica) made
recovery fail it as "never arrived" (`psp_reference_not_found`) and free its amount. When the PSP
then carried it out and said so (webhook, inquiry, reconciliation's settlement inquiry), that news
was "stale" and ignored: the shopper had the money, the PSP had paid it out, but Payera showed the
refund `failed`, the merchant's balance was never debited and the amount stayed refundable — a
second refund of it, with a new PSP key, paid the shopper twice.

Now a refund failed only for not being known at the PSP is recorded `succeeded` when the PSP
reports it done (posted once, `refund.succeeded`); a refund the PSP refused stays `failed`.

The PSP is a stand-in for alpha (alpha's wire format; a PSP is outside the machine) that takes a
refund longer than the adapter's read timeout and lists it only once it has carried it out.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from ledger.models import Journal
from payera.events.models import Event
from payments.models import OperationStatus, Payment, Refund
from payments.services import payment_create, recovery_run, refund_create
from payments.services.recovery import attempt_settlement_inquire
from tests.helpers import psp_at, standin_psp
from tests.merchants.factories import MerchantFactory
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


class SlowRefundAlpha:
    """Alpha's wire format: captures at authorization; a refund answers after 2.5 s (past the
    adapter's 1.5 s read timeout) and is listed only once `carry_out()` is called."""

    def __init__(self) -> None:
        self.auths: dict[str, dict] = {}
        self.queued: list[tuple[dict, dict]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def carry_out(self) -> None:
        with self._lock:
            for auth, op in self.queued:
                auth["operations"].append(op)
                auth["amount_refunded"] += op["amount"]
            self.queued.clear()

    def __call__(self, method: str, path: str, body: dict | None):
        if method == "POST" and path == "/v1/authorizations":
            auth = {"object": "authorization", "id": f"auth_X{next(self._ids)}",
                    "merchant_reference": body["merchant_reference"], "status": "captured",
                    "amount": body["amount"], "currency": body["currency"], "amount_captured": body["amount"],
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
            with self._lock:
                return 200, auth
        op = {"object": "operation", "id": f"op_{next(self._ids)}", "type": "refund",
              "authorization_id": auth["id"], "authorization_reference": auth["merchant_reference"],
              "merchant_reference": body["merchant_reference"], "amount": body["amount"],
              "currency": auth["currency"], "status": "succeeded", "response_code": None,
              "response_message": None, "created": "2026-01-01T00:00:00Z"}
        with self._lock:
            self.queued.append((auth, op))
        time.sleep(2.5)
        return 201, op


def test_a_refund_failed_as_never_arrived_that_the_psp_then_made_is_recorded(psp_settings, settings):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["alpha"])
    psp = SlowRefundAlpha()
    with standin_psp(psp) as (url, _):
        psp_at(settings, "alpha", url)
        payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
        assert payment.status == "succeeded"
        refund = refund_create(merchant=merchant, payment_id=payment.id, amount=600)
        assert refund.status == OperationStatus.PENDING  # timed out: the outcome is unknown

        recovery_run(force=True)  # the PSP lists no such refund (yet)
        refund = Refund.objects.get(pk=refund.id)
        assert (refund.status, refund.failure_code) == (OperationStatus.FAILED, "psp_reference_not_found")

        psp.carry_out()  # the PSP made it after all
        assert attempt_settlement_inquire(attempt_id=refund.attempt_id)
        refund = Refund.objects.get(pk=refund.id)
        assert refund.status == OperationStatus.SUCCEEDED
        payment = Payment.objects.get(pk=payment.id)
        assert payment.amount_refunded == 600
        assert Journal.objects.filter(reference=f"refund:{refund.id}").count() == 1
        assert [e.data["object"]["id"] for e in Event.objects.filter(merchant_id=merchant.id,
                                                                       type="refund.succeeded")] == [refund.id]
        assert_ledger_sound()
        # it counts against what is left: only 400 can be refunded now
        with pytest.raises(Exception, match="greater than what is left"):
            refund_create(merchant=merchant, payment_id=payment.id, amount=600)

        recovery_run(force=True)  # asked again: nothing changes
        assert Journal.objects.filter(reference=f"refund:{refund.id}").count() == 1
        assert Payment.objects.get(pk=payment.id).amount_refunded == 600
