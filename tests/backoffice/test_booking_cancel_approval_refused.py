"""A booking-cancel approval whose escrow refund the PSP refuses ends `failed`, saying why.

What was wrong: a four-eyes booking cancel (`RefundApproval` with `booking`) binds its escrow
refund to the approval when the refund is inserted, before the PSP call. When the PSP then
refused the refund, `booking_cancel` raised `booking_refund_failed`, but `_approval_record` saw
the bound refund and recorded the approval `sent`, dropping the refusal: finance saw "sent" for
a refund that never happened (the booking still confirmed, its escrow whole, nothing moved) and
no reason anywhere on the approval. A plain refund approval refused by the PSP ends `failed`
with the PSP's refusal in `failure`; the booking one now does the same.

The refusal is real: the sandbox PSP (alpha, over HTTP) already refunded part of the payment
outside Payera (as from the PSP's own dashboard), so it answers `amount_too_large` to a refund
of the whole escrow."""

from __future__ import annotations

import pytest

from ledger.selectors import balance_get
from payments.backoffice.models import RefundApproval
from payments.backoffice.services import (
    refund_approval_approve,
    refund_approvals_resume,
    staff_booking_cancel,
    staff_refund_request,
)
from payments.models import Booking, OperationStatus, PaymentAttempt, Refund
from psp_adapters.port import PspReference, RefundRequest
from psp_adapters.registry import get_adapter
from tests.helpers import confirmed_booking

pytestmark = pytest.mark.django_db


@pytest.fixture
def merchant(four_eyes_merchant):
    return four_eyes_merchant


def refunded_outside_payera(payment_id: str, amount: int) -> None:
    """A refund made at the PSP itself, not through Payera: the PSP has less left to refund."""
    attempt = PaymentAttempt.objects.get(payment_id=payment_id, status="captured")
    result = get_adapter("alpha").refund(
        RefundRequest(
            payment=PspReference(attempt.id, attempt.psp_reference or None),
            reference=f"ext_{attempt.id}",
            amount=amount,
            currency="EUR",
            reason="",
        )
    )
    assert result.outcome == "approved"


def approve_and_die(monkeypatch, user, approval) -> None:
    """The approver's process dies after the PSP answered, before the approval's outcome is recorded."""
    import payments.backoffice.services as staff_module

    class Died(Exception):
        pass

    def died(**kwargs):
        raise Died()

    monkeypatch.setattr(staff_module, "_approval_record", died)
    with pytest.raises(Died):
        refund_approval_approve(user=user, approval_id=approval.pk, note="ok")
    monkeypatch.undo()


def escrow_eur(merchant) -> int:
    return sum(m.amount for m in balance_get(owner=merchant.id).escrow if m.currency == "EUR")


def test_a_booking_cancel_approval_refused_by_the_psp_ends_failed_with_the_refusal(role_users, merchant, finance2):
    booking = confirmed_booking(merchant, reference="stay-refused")
    escrow = escrow_eur(merchant)
    approval = staff_booking_cancel(user=role_users["finance"], booking_id=booking.pk, reason="hotel closed").approval
    refunded_outside_payera(booking.payment_id, 100)

    done = refund_approval_approve(user=finance2, approval_id=approval.pk, note="ok")

    [refund] = Refund.objects.filter(payment_id=booking.payment_id)
    assert refund.status == OperationStatus.FAILED
    assert done.status == "failed", (done.status, done.failure)
    assert "booking_refund_failed" in done.failure and refund.failure_code in done.failure
    b = Booking.objects.get(pk=booking.pk)
    assert (b.status, b.amount_refunded) == ("confirmed", 0)  # nothing moved
    assert escrow_eur(merchant) == escrow
    # decided: the resume leaves it alone and nothing is sent again
    assert refund_approvals_resume(grace_seconds=0)["approvals"] == 0
    assert Refund.objects.filter(payment_id=booking.payment_id).count() == 1
    assert RefundApproval.objects.get(pk=approval.pk).status == "failed"


def test_a_refused_booking_cancel_whose_recording_died_is_recorded_failed_by_the_resume(
    role_users, merchant, finance2, monkeypatch
):
    """The approver's process died after the PSP refused the escrow refund, before the approval
    was recorded: the resume finds the bound refund failed and records the approval `failed` with
    the refund's failure code (it was `sent` before), sending nothing again."""
    booking = confirmed_booking(merchant, reference="stay-refused-2")
    approval = staff_booking_cancel(user=role_users["finance"], booking_id=booking.pk, reason="hotel closed").approval
    refunded_outside_payera(booking.payment_id, 100)

    approve_and_die(monkeypatch, finance2, approval)
    assert RefundApproval.objects.get(pk=approval.pk).status == "approved"

    assert refund_approvals_resume(grace_seconds=0) == {"approvals": 1, "sent": 0, "failed": 1, "waiting": 0}
    [refund] = Refund.objects.filter(payment_id=booking.payment_id)
    done = RefundApproval.objects.get(pk=approval.pk)
    assert refund.status == OperationStatus.FAILED and done.refund_id == refund.pk
    assert done.status == "failed" and refund.failure_code in done.failure
    assert Booking.objects.get(pk=booking.pk).status == "confirmed"


def test_a_booking_cancel_approval_whose_refund_the_psp_refuses_later_ends_failed(role_users, merchant, finance2):
    """The PSP accepts the escrow refund (pending: the cancel is recorded, the approval `sent`) and
    refuses it later (sandbox card 4000000000005126: refunds fail by webhook; here recovery's
    inquiry, as the webhook would). The booking stays canceled and its escrow goes to pending
    (`booking.refund_failed`), but nothing was refunded: the approval left `sent` said otherwise.
    Like a plain refund approval, the resume now ends it `failed` with the refund's failure code,
    once."""
    from tests.backoffice.payments import settle

    booking = confirmed_booking(merchant, reference="stay-refused-later", number="4000000000005126")
    approval = staff_booking_cancel(user=role_users["finance"], booking_id=booking.pk, reason="hotel closed").approval
    assert refund_approvals_resume(grace_seconds=0)["approvals"] == 0  # waiting: not touched
    assert RefundApproval.objects.get(pk=approval.pk).status == "pending"

    done = refund_approval_approve(user=finance2, approval_id=approval.pk, note="ok")
    [refund] = Refund.objects.filter(payment_id=booking.payment_id)
    assert (done.status, done.refund_id, refund.status) == ("sent", refund.pk, OperationStatus.PENDING)
    assert Booking.objects.get(pk=booking.pk).status == "canceled"
    assert refund_approvals_resume(grace_seconds=0)["approvals"] == 0  # its refund still pending: stays sent
    assert RefundApproval.objects.get(pk=approval.pk).status == "sent"

    settle(booking.payment_id, timeout=30)  # the PSP's refusal arrives
    refund.refresh_from_db()
    assert refund.status == OperationStatus.FAILED
    b = Booking.objects.get(pk=booking.pk)
    assert (b.status, b.amount_refunded) == ("canceled", 0)  # its escrow went to pending, nothing refunded

    assert refund_approvals_resume(grace_seconds=0) == {"approvals": 1, "sent": 0, "failed": 1, "waiting": 0}
    done = RefundApproval.objects.get(pk=approval.pk)
    assert (done.status, done.refund_id) == ("failed", refund.pk)
    assert "booking_refund_failed" in done.failure and refund.failure_code in done.failure
    assert "unchanged" not in done.failure  # the booking was canceled: the failure says so
    assert refund_approvals_resume(grace_seconds=0)["approvals"] == 0  # once
    assert Refund.objects.filter(payment_id=booking.payment_id).count() == 1

    # nothing stays in escrow for the canceled booking (its escrow went to the merchant's pending
    # balance), and finance can still refund the shopper: a plain refund of the payment (four eyes
    # above the threshold), out of pending as any payment's
    assert escrow_eur(merchant) == 0
    again = staff_refund_request(user=role_users["finance"], payment_id=booking.payment_id, amount=10_000,
                                 reason="the guest's refund failed").approval  # fmt: skip
    assert (again.booking_id, again.amount, again.status) == (None, 10_000, "pending")
