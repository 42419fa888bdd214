"""A plain refund approval whose refund the PSP refuses ends `failed`, saying why, as a
booking-cancel approval does (tests/backoffice/test_booking_cancel_approval_refused.py).

What was wrong: approving binds the new refund to the approval before the PSP call, and
`_approval_record` recorded every approval with a bound refund `sent`, "whatever the refund's
outcome". When the PSP refused the refund, finance saw the approval `sent` (and the admin's
approve action said "approved; refund … failed" as a success) for a refund that never happened,
with no reason on the approval. Now an approval whose refund failed ends `failed` with the
refund's failure code in `failure` (shown on the approval's admin page), when approved and when
the resume records a send whose process died.

The refusal is real: the sandbox PSP (alpha, over HTTP) already refunded part of the payment
outside Payera (as from the PSP's own dashboard), so it answers `amount_too_large` to a refund of
the whole payment."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote

from payera.backoffice.models import StaffAction
from payments.backoffice.models import RefundApproval
from payments.backoffice.services import refund_approval_approve, refund_approvals_resume, staff_refund_request
from payments.models import OperationStatus, Refund
from tests.backoffice.payments import pay
from tests.backoffice.staff import otp_force_login
from tests.backoffice.test_booking_cancel_approval_refused import approve_and_die, refunded_outside_payera

pytestmark = pytest.mark.django_db

APPROVALS = "/admin/payments_backoffice/refundapproval/"


def asked(role_users, payment) -> RefundApproval:
    staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=10_000, reason="goods returned")
    return RefundApproval.objects.get(payment=payment)


def test_a_refund_approval_refused_by_the_psp_ends_failed_with_the_refusal_shown_in_the_admin(
    client, role_users, payment, finance2
):
    approval = asked(role_users, payment)
    refunded_outside_payera(payment.pk, 100)

    otp_force_login(client, finance2)
    url = f"{APPROVALS}{quote(approval.pk)}/"
    assert client.post(url + "approve/", {"reason": "checked the return"}).status_code == 302

    [refund] = Refund.objects.filter(payment=payment)
    assert refund.status == OperationStatus.FAILED and refund.failure_code
    done = RefundApproval.objects.get(pk=approval.pk)
    assert (done.status, done.refund_id) == ("failed", refund.pk), done.status
    assert "refund_failed" in done.failure and refund.failure_code in done.failure
    action = StaffAction.objects.get(action="payments.refund_approve")
    assert action.outcome == "refused" and refund.failure_code in action.detail
    page = client.get(url + "change/")
    assert page.status_code == 200 and done.failure.encode() in page.content
    payment.refresh_from_db()
    assert payment.amount_refunded == 0
    # decided: the resume leaves it alone and nothing is sent again
    assert refund_approvals_resume(grace_seconds=0)["approvals"] == 0
    assert Refund.objects.filter(payment=payment).count() == 1


def test_a_refused_refund_whose_recording_died_is_recorded_failed_by_the_resume(
    role_users, payment, finance2, monkeypatch
):
    approval = asked(role_users, payment)
    refunded_outside_payera(payment.pk, 100)

    approve_and_die(monkeypatch, finance2, approval)
    assert RefundApproval.objects.get(pk=approval.pk).status == "approved"

    assert refund_approvals_resume(grace_seconds=0) == {"approvals": 1, "sent": 0, "failed": 1, "waiting": 0}
    [refund] = Refund.objects.filter(payment=payment)
    done = RefundApproval.objects.get(pk=approval.pk)
    assert refund.status == OperationStatus.FAILED and done.refund_id == refund.pk
    assert done.status == "failed" and refund.failure_code in done.failure


def test_a_refund_approval_whose_refund_the_psp_refuses_later_ends_failed(role_users, four_eyes_merchant, finance2):
    """The PSP accepts the refund (pending, the approval `sent`), then refuses it (alpha's card
    4000000000005126: refunds fail asynchronously). The approval no longer stays `sent`: the
    resume (beat, every minute) records it `failed` with the refund's failure code; once."""
    from tests.backoffice.payments import settle

    payment = pay(four_eyes_merchant, amount=10_000, number="4000000000005126", connectors=["alpha"])
    approval = asked(role_users, payment)

    done = refund_approval_approve(user=finance2, approval_id=approval.pk, note="ok")
    [refund] = Refund.objects.filter(payment=payment)
    assert (done.status, refund.status) == ("sent", OperationStatus.PENDING)  # accepted, not yet decided

    settle(payment.pk, timeout=30)  # the PSP's refusal arrives (recovery's inquiry, as its webhook would)
    refund.refresh_from_db()
    assert refund.status == OperationStatus.FAILED
    assert refund_approvals_resume(grace_seconds=0) == {"approvals": 1, "sent": 0, "failed": 1, "waiting": 0}
    done = RefundApproval.objects.get(pk=approval.pk)
    assert (done.status, done.refund_id) == ("failed", refund.pk)
    assert "refund_failed" in done.failure and refund.failure_code in done.failure
    assert refund_approvals_resume(grace_seconds=0)["approvals"] == 0
    assert Refund.objects.filter(payment=payment).count() == 1
