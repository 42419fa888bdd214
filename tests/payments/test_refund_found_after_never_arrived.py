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

import pytest

from ledger.models import Journal
from payera.events.models import Event
from payments.models import OperationStatus, Payment, Refund
from payments.services import payment_create, recovery_run, refund_create
from payments.services.recovery import attempt_settlement_inquire
from tests.helpers import psp_at, standin_psp
from tests.merchants.factories import MerchantFactory
from tests.payments.standin_alpha import StandinAlpha
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def test_a_refund_failed_as_never_arrived_that_the_psp_then_made_is_recorded(psp_settings, settings):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["alpha"])
    psp = StandinAlpha(capture_at_authorization=True, refund="slow")
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
        assert [
            e.data["object"]["id"] for e in Event.objects.filter(merchant_id=merchant.id, type="refund.succeeded")
        ] == [refund.id]
        assert_ledger_sound()
        # it counts against what is left: only 400 can be refunded now
        with pytest.raises(Exception, match="greater than what is left"):
            refund_create(merchant=merchant, payment_id=payment.id, amount=600)

        recovery_run(force=True)  # asked again: nothing changes
        assert Journal.objects.filter(reference=f"refund:{refund.id}").count() == 1
        assert Payment.objects.get(pk=payment.id).amount_refunded == 600
