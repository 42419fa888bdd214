"""A capture recovery marked `failed` because the PSP did not know it yet, that the PSP then made.

A capture whose request timed out is asked about after the grace period; a PSP that does not list
it yet (the request still queued, an inquiry from a lagging replica) made recovery fail it as
"never arrived" (`psp_reference_not_found`). When the PSP then captured and said so (its webhook,
an inquiry, reconciliation's settlement inquiry for the capture it paid out), the news was "stale"
and ignored — and so was the authorization now reported captured ("handled by the capture path").
The PSP held the money, Payera showed the payment `requires_capture` for ever, never credited the
merchant, and the authorization expiry later tried to void a captured payment.

Now a capture failed only for being unknown at the PSP is recorded `succeeded` when the PSP reports
it done, while the payment still awaits capture (posted once, `payment.captured`).

The PSP is a stand-in for alpha (alpha's wire format; a PSP is outside the machine) that takes a
capture longer than the adapter's read timeout and lists it only once it has carried it out.
"""

from __future__ import annotations

import pytest

from ledger.models import Journal
from payera.events.models import Event
from payments.models import PS, OperationStatus, Payment
from payments.services import payment_capture, payment_create, recovery_run
from payments.services.recovery import attempt_settlement_inquire
from tests.helpers import psp_at, standin_psp
from tests.merchants.factories import MerchantFactory
from tests.payments.standin_alpha import StandinAlpha
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def test_a_capture_failed_as_never_arrived_that_the_psp_then_made_is_recorded(psp_settings, settings):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["alpha"])
    psp = StandinAlpha(capture="slow")
    with standin_psp(psp) as (url, _):
        psp_at(settings, "alpha", url)
        payment = payment_create(
            merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD, capture_method="manual"
        )
        assert payment.status == PS.REQUIRES_CAPTURE
        answered = payment_capture(merchant=merchant, payment_id=payment.id, amount_to_capture=800)
        assert answered.status == PS.REQUIRES_CAPTURE  # timed out: the outcome is unknown

        recovery_run(force=True)  # the PSP lists no such capture (yet)
        capture = Payment.objects.get(pk=payment.id).captures.get()
        assert (capture.status, capture.failure_code) == (OperationStatus.FAILED, "psp_reference_not_found")

        psp.carry_out()  # the PSP captured after all
        assert attempt_settlement_inquire(attempt_id=capture.attempt_id)
        payment = Payment.objects.get(pk=payment.id)
        assert (payment.status, payment.amount_captured) == (PS.SUCCEEDED, 800)
        assert payment.captures.get().status == OperationStatus.SUCCEEDED
        assert Journal.objects.filter(reference=f"capture:{capture.attempt_id}").count() == 1
        assert Event.objects.filter(merchant_id=merchant.id, type="payment.captured").count() == 1
        assert_ledger_sound()

        recovery_run(force=True)  # asked again: nothing changes
        assert Journal.objects.filter(reference=f"capture:{capture.attempt_id}").count() == 1
