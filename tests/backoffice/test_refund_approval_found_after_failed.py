"""A refund approval failed because its refund "never arrived" at the PSP, when the PSP then made
the refund: the approval must not keep saying nothing was refunded (session 19's review).

`refund_approvals_resume` ends a `sent` plain refund approval `failed` ("refund_failed: … nothing
was refunded.") once its refund failed. A refund can fail only for not being known at the PSP yet
(`psp_reference_not_found`: its request timed out, recovery asked, the PSP did not list it) and then
be carried out by the PSP and recorded `succeeded` (`mark_found`,
tests/payments/test_refund_found_after_never_arrived.py). The approval stayed `failed` with
"nothing was refunded" while the shopper had the money and the merchant's balance was debited:
finance, reading the approval, would ask for the refund again (refunding the shopper twice when
the payment has room left). Now the resume brings such an approval back to `sent` (its refund
linked, the failure cleared).

The PSP is a stand-in for alpha (its wire format; a PSP is outside the machine) that takes a refund
longer than the adapter's read timeout and lists it only once it has carried it out.
"""

from __future__ import annotations

import pytest

from payments.backoffice.models import RefundApproval
from payments.backoffice.services import refund_approval_approve, refund_approvals_resume, staff_refund_request
from payments.models import OperationStatus, Payment, Refund
from payments.services import payment_create, recovery_run
from payments.services.recovery import attempt_settlement_inquire
from tests.helpers import psp_at, standin_psp
from tests.payments.standin_alpha import StandinAlpha

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def test_an_approval_failed_as_never_arrived_whose_refund_the_psp_made_ends_sent(
    psp_settings, settings, world, role_users, finance2
):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = world["A"].merchant
    merchant.refund_approval_threshold = 500
    merchant.connectors = ["alpha"]
    merchant.save(update_fields=["refund_approval_threshold", "connectors"])
    psp = StandinAlpha(capture_at_authorization=True, refund="slow")
    with standin_psp(psp) as (url, _):
        psp_at(settings, "alpha", url)
        payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
        assert payment.status == "succeeded"
        staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=600, reason="goods returned")
        approval = RefundApproval.objects.get(payment=payment)
        approval = refund_approval_approve(user=finance2, approval_id=approval.pk, note="checked")
        [refund] = Refund.objects.filter(payment=payment)
        assert refund.status == OperationStatus.PENDING  # timed out: unknown
        assert (approval.status, approval.refund_id) == ("sent", refund.pk)

        recovery_run(force=True)  # the PSP lists no such refund (yet)
        refund.refresh_from_db()
        assert (refund.status, refund.failure_code) == (OperationStatus.FAILED, "psp_reference_not_found")
        refund_approvals_resume(grace_seconds=0)
        assert RefundApproval.objects.get(pk=approval.pk).status == "failed"

        psp.carry_out()  # the PSP made it after all
        assert attempt_settlement_inquire(attempt_id=refund.attempt_id)
        refund.refresh_from_db()
        assert refund.status == OperationStatus.SUCCEEDED
        assert Payment.objects.get(pk=payment.pk).amount_refunded == 600

        refund_approvals_resume(grace_seconds=0)
        done = RefundApproval.objects.get(pk=approval.pk)
        assert (done.status, done.refund_id, done.failure) == ("sent", refund.pk, "")
        refund_approvals_resume(grace_seconds=0)  # idempotent
        assert RefundApproval.objects.get(pk=approval.pk).status == "sent"
