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

import pytest

from ledger.models import Journal
from payera.events.models import Event
from payments.models import PS, OperationStatus, Payment
from payments.services import payment_create, recovery_run
from tests.helpers import psp_at, standin_psp
from tests.merchants.factories import MerchantFactory
from tests.payments.standin_alpha import StandinAlpha

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def test_an_automatic_capture_the_psp_refused_for_a_moment_is_captured_by_recovery(psp_settings, settings):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["alpha"])
    psp = StandinAlpha(refuse_captures=1)
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
