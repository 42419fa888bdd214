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

import pytest

from payera.events.models import Event
from payments.models import PS, OperationStatus, Payment
from payments.services import payment_capture, payment_create, recovery_run
from tests.helpers import psp_at, standin_psp
from tests.merchants.factories import MerchantFactory
from tests.payments.standin_alpha import StandinAlpha

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def test_a_capture_the_psp_refuses_after_answering_pending_is_told_to_the_merchant(psp_settings, settings):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["alpha"])
    with standin_psp(StandinAlpha(capture="pending_then_failed")) as (url, _):
        psp_at(settings, "alpha", url)
        payment = payment_create(
            merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD, capture_method="manual"
        )
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
