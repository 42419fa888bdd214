"""Four eyes and disputes: money a dispute (chargeback) took back can not be refunded again.

What was wrong: the back office's `refundable_left` (what a staff refund or a refund approval may
still take) was captured less live refunds less approvals waiting, and ignored `amount_disputed`,
while the refund itself (`refund_create`) subtracts it. So a finance user could ask for, and a
second finance user approve, a refund of money the card network had already given back to the
shopper: the approval was recorded as approved and only failed when sent, finance had signed off
something impossible, and the page said that much was "left to refund". Now the request counts
the dispute as the send does (400 `amount_too_large`, no approval made), and an approval whose
payment was disputed after it was asked for is refused when a second finance user approves it
(it stays pending, for a reject), with nothing sent to the PSP.
"""

from __future__ import annotations

import time

import pytest
from django.contrib.admin.utils import quote

from payera.backoffice.models import StaffAction
from payments.backoffice.models import RefundApproval
from payments.backoffice.services import (
    StaffRefundAmountError,
    refund_approval_approve,
    refund_approval_reject,
    refundable_left,
    staff_refund_request,
)
from payments.models import Payment, PaymentAttempt, Refund
from payments.services.recovery import dispute_settlement_inquire
from tests.backoffice.payments import pay
from tests.backoffice.staff import otp_force_login

pytestmark = pytest.mark.django_db

DISPUTED = "4000000000000259"  # approved; a chargeback of the whole capture follows
REASON = "ticket 4711: goods returned"


@pytest.fixture
def merchant(four_eyes_merchant):
    return four_eyes_merchant


def dispute(psp_settings, payment: Payment) -> Payment:
    """The sandbox opens the chargeback; Payera learns it as from its webhook (the PSP is asked)."""
    attempt = PaymentAttempt.objects.get(payment=payment, status="captured")
    deadline = time.monotonic() + 15
    while not (rows := psp_settings["alpha"].payments(attempt.id)) or not rows[0]["disputes"]:
        assert time.monotonic() < deadline, "the sandbox opened no dispute"
        time.sleep(0.1)
    assert dispute_settlement_inquire(attempt_id=attempt.id, psp_dispute_id=rows[0]["disputes"][0]["id"])
    payment = Payment.objects.get(pk=payment.pk)
    assert payment.amount_disputed == payment.amount_captured == 10_000
    return payment


def test_disputed_money_is_not_left_to_refund_nor_to_ask_approval_for(client, psp_settings, role_users, merchant):
    payment = dispute(psp_settings, pay(merchant, amount=10_000, number=DISPUTED, connectors=["alpha"]))
    assert refundable_left(payment) == 0
    for amount in (5_000, 1_000):  # above the threshold (an approval) and below it (sent at once)
        with pytest.raises(StaffRefundAmountError):
            staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=amount, reason=REASON)
    # through the admin's refund button too: refused, recorded, nothing made
    otp_force_login(client, role_users["finance"])
    page = client.post(f"/admin/payments/payment/{quote(payment.pk)}/refund/", {"amount": 5_000, "reason": REASON})
    assert page.status_code == 302
    refused = StaffAction.objects.get(action="payments.refund")
    assert refused.outcome == "refused" and "left to refund (0)" in refused.detail
    assert not RefundApproval.objects.exists() and not Refund.objects.exists()


def test_an_approval_whose_payment_was_disputed_meanwhile_can_not_be_approved(
    client, psp_settings, role_users, merchant, finance2
):
    payment = pay(merchant, amount=10_000, number=DISPUTED, connectors=["alpha"])
    approval = staff_refund_request(
        user=role_users["finance"], payment_id=payment.pk, amount=5_000, reason=REASON
    ).approval
    assert approval.status == "pending"
    dispute(psp_settings, payment)

    with pytest.raises(StaffRefundAmountError) as refused:
        refund_approval_approve(user=finance2, approval_id=approval.pk, note="ok")
    assert "disputed" in refused.value.message
    otp_force_login(client, finance2)
    url = f"/admin/payments_backoffice/refundapproval/{quote(approval.pk)}/approve/"
    assert client.post(url, {"reason": "checked the return"}).status_code == 302
    assert StaffAction.objects.get(action="payments.refund_approve").outcome == "refused"
    approval.refresh_from_db()
    assert (approval.status, approval.decided_by, approval.refund_id) == ("pending", None, None)
    assert not Refund.objects.exists()
    # what is left to do with it: reject it
    assert refund_approval_reject(user=finance2, approval_id=approval.pk, note="disputed").status == "rejected"
    assert not Refund.objects.exists()
