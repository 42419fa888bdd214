"""Four eyes on staff refunds: above the merchant's threshold a refund waits for a second, different
finance user; only their approval sends it to the (real, sandbox) PSP. Below it goes straight through."""

from __future__ import annotations

import threading

import pytest
from django.contrib.admin.utils import quote
from django.db import IntegrityError, transaction

from payera.backoffice.models import StaffAction
from payera.staff.access import staff_grant_merchant
from payments.backoffice.models import RefundApproval
from payments.backoffice.services import (
    FourEyesError,
    RefundApprovalStateError,
    refund_approval_approve,
    staff_refund_request,
)
from payments.models import OperationStatus, PaymentAttempt, Refund
from psp_adapters.port import OperationKind, PspReference
from psp_adapters.registry import get_adapter
from tests.backoffice.payments import APPROVED, pay
from tests.backoffice.staff import make_staff, otp_force_login

pytestmark = pytest.mark.django_db

PAYMENTS = "/admin/payments/payment/"
APPROVALS = "/admin/payments_backoffice/refundapproval/"
REASON = {"reason": "ticket 4711: goods returned"}


def refunds_at_psp(payment) -> list:
    """The refund operations the sandbox PSP knows for the payment's authorization."""
    attempt = PaymentAttempt.objects.get(payment=payment, status="captured")
    result = get_adapter(attempt.connector).inquire(PspReference(attempt.id, attempt.psp_reference or None))
    return [op for op in result.operations if op.kind == OperationKind.REFUND]


def refund_page(payment) -> str:
    return f"{PAYMENTS}{quote(payment.pk)}/refund/"


def approval_url(approval, action: str = "change") -> str:
    return f"{APPROVALS}{quote(approval.pk)}/{action}/"


def test_below_the_threshold_a_refund_goes_straight_to_the_psp(client, role_users, payment):
    otp_force_login(client, role_users["finance"])
    form = client.get(refund_page(payment))
    assert form.status_code == 200 and b'name="amount"' in form.content and b'name="reason"' in form.content
    assert client.post(refund_page(payment), {"amount": 2_000, **REASON}).status_code == 302
    [refund] = Refund.objects.filter(payment=payment)
    assert (refund.amount, refund.status) == (2_000, OperationStatus.SUCCEEDED)
    assert [op.reference for op in refunds_at_psp(payment)] == [refund.pk]
    assert not RefundApproval.objects.exists()
    [record] = StaffAction.objects.all()
    assert (record.action, record.outcome, record.reason) == ("payments.refund", "done", REASON["reason"])
    assert refund.payment.events.filter(object_id=refund.pk, actor=f"staff:{role_users['finance'].pk}").exists()


def test_above_the_threshold_it_waits_and_reaches_the_psp_only_after_a_second_finance_user_approves(
    client, role_users, payment, finance2
):
    requester = role_users["finance"]
    otp_force_login(client, requester)
    assert client.post(refund_page(payment), {"amount": 2_001, **REASON}).status_code == 302
    [approval] = RefundApproval.objects.all()
    assert (approval.status, approval.amount, approval.requested_by, approval.reason) == (
        "pending", 2_001, requester, REASON["reason"])
    assert not Refund.objects.exists() and refunds_at_psp(payment) == []  # nothing sent
    assert StaffAction.objects.get().outcome == "requested"

    # the requester can not approve: no button, and the action is refused and recorded
    page = client.get(approval_url(approval))
    assert page.status_code == 200 and b'id="bo-approve"' not in page.content and b'id="bo-reject"' in page.content
    assert client.post(approval_url(approval, "approve"), REASON).status_code == 302
    approval.refresh_from_db()
    assert approval.status == "pending" and not Refund.objects.exists() and refunds_at_psp(payment) == []
    refused = StaffAction.objects.get(action="payments.refund_approve")
    assert refused.outcome == "refused" and "another finance user" in refused.detail
    with pytest.raises(FourEyesError):
        refund_approval_approve(user=requester, approval_id=approval.pk, note="me again")

    # a second finance user approves: now, and only now, the PSP refunds
    otp_force_login(client, finance2)
    page = client.get(approval_url(approval))
    assert b'id="bo-approve"' in page.content
    assert client.post(approval_url(approval, "approve"), {"reason": "checked the return"}).status_code == 302
    approval.refresh_from_db()
    [refund] = Refund.objects.filter(payment=payment)
    assert (approval.status, approval.decided_by, approval.refund_id) == ("sent", finance2, refund.pk)
    assert (refund.amount, refund.status) == (2_001, OperationStatus.SUCCEEDED)
    assert [op.reference for op in refunds_at_psp(payment)] == [refund.pk]
    payment.refresh_from_db()
    assert payment.amount_refunded == 2_001
    from ledger.selectors import journal_list_for_references

    assert [j.reference for j in journal_list_for_references(references=[f"refund:{refund.pk}"])] == [
        f"refund:{refund.pk}"]
    # decided once: a second approval sends nothing more
    with pytest.raises(RefundApprovalStateError):
        refund_approval_approve(user=finance2, approval_id=approval.pk)
    assert Refund.objects.count() == 1
    # the whole story is on the payment page
    story = client.get(f"{PAYMENTS}{quote(payment.pk)}/change/").context["story"]
    assert [a.pk for a in story.approvals] == [approval.pk] and [r.pk for r in story.refunds] == [refund.pk]
    assert {s.action for s in story.staff_actions} == {"payments.refund", "payments.refund_approve"}


def test_a_rejected_refund_is_never_sent(client, role_users, payment, finance2):
    result = staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=5_000, reason="x" * 10)
    approval = result.approval
    otp_force_login(client, finance2)
    assert client.post(approval_url(approval, "reject"), {"reason": "no return received"}).status_code == 302
    approval.refresh_from_db()
    assert (approval.status, approval.decided_by) == ("rejected", finance2)
    with pytest.raises(RefundApprovalStateError):
        refund_approval_approve(user=finance2, approval_id=approval.pk)
    assert not Refund.objects.exists() and refunds_at_psp(payment) == []


def test_a_decision_note_holding_a_card_number_is_kept_masked(client, role_users, payment, finance2):
    """The note of an approval or rejection is shown on the approval's page: a card number typed into
    it is masked as the request's reason is."""
    from tests.backoffice.leaks import leaks

    result = staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=5_000, reason="x" * 10)
    otp_force_login(client, finance2)
    note = {"reason": "shopper's card 4111 1111 1111 1111 was not charged twice"}
    assert client.post(approval_url(result.approval, "reject"), note).status_code == 302
    approval = RefundApproval.objects.get(pk=result.approval.pk)
    assert approval.status == "rejected" and "411111******1111" in approval.decision_note
    assert leaks(client.get(approval_url(approval)).content.decode()) == []


def test_a_reason_and_a_note_lose_only_their_account_numbers(client, role_users, payment, finance2):
    """Staff text is masked for card numbers and IBANs only: "ticket number=48213" is no secret, and
    an IBAN ends where its country's length ends, not in the next word."""
    typed = "ticket number=48213: IBAN DE89370400440532013000 confirmed by phone"
    kept = "ticket number=48213: IBAN DE****************3000 confirmed by phone"
    result = staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=5_000, reason=typed)
    otp_force_login(client, finance2)
    note = {"reason": f"{typed} 4111 1111 1111 1111 1"}
    assert client.post(approval_url(result.approval, "reject"), note).status_code == 302
    approval = RefundApproval.objects.get(pk=result.approval.pk)
    assert approval.reason == kept and approval.decision_note == f"{kept} 411111******1111 1"


def test_the_database_refuses_an_approval_by_its_requester(role_users, payment):
    approval = staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=5_000,
                                    reason="x" * 10).approval
    with pytest.raises(IntegrityError), transaction.atomic():
        RefundApproval.objects.filter(pk=approval.pk).update(status="approved", decided_by=role_users["finance"])
    with pytest.raises(IntegrityError), transaction.atomic():
        RefundApproval.objects.filter(pk=approval.pk).update(status="sent", decided_by=None)


def test_waiting_refunds_count_against_what_is_left(role_users, payment):
    from payments.backoffice.services import StaffRefundAmountError

    staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=9_000, reason="x" * 10)
    with pytest.raises(StaffRefundAmountError):
        staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=1_500, reason="x" * 10)
    with pytest.raises(StaffRefundAmountError):
        staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=2_500, reason="x" * 10)
    assert RefundApproval.objects.count() == 1 and not Refund.objects.exists()


@pytest.mark.parametrize("role", ["support", "operations"])
def test_only_finance_approves(client, role_users, payment, role):
    approval = staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=5_000,
                                    reason="x" * 10).approval
    otp_force_login(client, role_users[role])
    assert client.get(approval_url(approval)).status_code == 200  # they may see it
    for action in ("approve", "reject"):
        assert client.get(approval_url(approval, action)).status_code == 403
        assert client.post(approval_url(approval, action), REASON).status_code == 403
    approval.refresh_from_db()
    assert approval.status == "pending"


def test_a_finance_user_of_another_merchant_can_not_see_or_approve(client, role_users, payment, world):
    approval = staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=5_000,
                                    reason="x" * 10).approval
    other = make_staff("finance-b", role="finance")
    staff_grant_merchant(user=other, merchant_id=world["B"].merchant.pk)
    otp_force_login(client, other)
    assert client.get(APPROVALS).context["cl"].result_list.count() == 0
    assert client.get(approval_url(approval)).status_code == 302  # "does not exist"
    assert client.post(approval_url(approval, "approve"), REASON).status_code == 404
    from payments.backoffice.services import RefundApprovalNotFoundError

    with pytest.raises(RefundApprovalNotFoundError):
        refund_approval_approve(user=other, approval_id=approval.pk)
    approval.refresh_from_db()
    assert approval.status == "pending" and not Refund.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_once_send_one_refund(psp_settings, world):
    from tests.backoffice.staff import make_staff as staff

    merchant = world["A"].merchant
    merchant.refund_approval_threshold = 0
    merchant.save(update_fields=["refund_approval_threshold"])
    payment = pay(merchant, amount=10_000, number=APPROVED, connectors=["alpha"])
    users = [staff(f"fin{n}", role="finance") for n in range(3)]
    for user in users:
        staff_grant_merchant(user=user, merchant_id=merchant.pk)
    approval = staff_refund_request(user=users[0], payment_id=payment.pk, amount=3_000, reason="x" * 10).approval
    outcomes: list = []
    barrier = threading.Barrier(2)

    def approve(user):
        from django.db import connection

        try:
            barrier.wait()
            outcomes.append(refund_approval_approve(user=user, approval_id=approval.pk).status)
        except RefundApprovalStateError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(user,)) for user in users[1:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["refused", "sent"]
    assert Refund.objects.filter(payment=payment).count() == 1
    assert len(refunds_at_psp(payment)) == 1


def test_one_approval_can_never_make_two_refunds(role_users, payment, finance2):
    """The refund is bound to its approval inside the transaction that inserts it: a second sender
    (a resume racing the approver's request) is refused before its refund exists or reaches the PSP."""
    from payments.backoffice.services import RefundApprovalAlreadySentError, _approval_bind, _approval_decide
    from payments.services import refund_create

    approval = staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=5_000,
                                    reason="x" * 10).approval
    _approval_decide(user=finance2, approval_id=approval.pk, verb="approve", note="")
    first = refund_create(merchant=payment.merchant, payment_id=payment.pk, amount=5_000,
                          on_begin=_approval_bind(approval.pk))
    with pytest.raises(RefundApprovalAlreadySentError):
        refund_create(merchant=payment.merchant, payment_id=payment.pk, amount=5_000,
                      on_begin=_approval_bind(approval.pk))
    assert [r.pk for r in Refund.objects.filter(payment=payment)] == [first.pk]
    assert [op.reference for op in refunds_at_psp(payment)] == [first.pk]
    approval.refresh_from_db()
    assert (approval.status, approval.refund_id) == ("approved", first.pk)
    # what is left to refund counts the bound refund once, not again as a waiting approval
    from payments.backoffice.services import refundable_left

    assert refundable_left(payment) == 10_000 - 5_000


def test_an_approval_refused_by_a_busy_payment_waits_and_is_sent_by_the_resume(role_users, payment, finance2):
    """A refusal that passes (another mutation of the payment in flight) does not fail the
    approval: it stays approved, and the resume (beat, every minute) sends it once."""
    from payments.backoffice.services import refund_approvals_resume
    from payments.models import Payment
    from payments.services.common import now

    approval = staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=5_000,
                                    reason="x" * 10).approval
    Payment.objects.filter(pk=payment.pk).update(inflight="capture", inflight_at=now())
    approval = refund_approval_approve(user=finance2, approval_id=approval.pk)
    assert (approval.status, approval.refund_id, approval.failure) == ("approved", None, "")
    assert refund_approvals_resume(grace_seconds=0) == {"approvals": 1, "sent": 0, "failed": 0, "waiting": 1}
    assert not Refund.objects.exists() and refunds_at_psp(payment) == []
    Payment.objects.filter(pk=payment.pk).update(inflight="", inflight_at=None)
    assert refund_approvals_resume(grace_seconds=3600)["approvals"] == 0  # within the grace: left alone
    assert refund_approvals_resume(grace_seconds=0) == {"approvals": 1, "sent": 1, "failed": 0, "waiting": 0}
    approval.refresh_from_db()
    [refund] = Refund.objects.filter(payment=payment)
    assert (approval.status, approval.refund_id, refund.status) == ("sent", refund.pk, OperationStatus.SUCCEEDED)
    assert refund_approvals_resume(grace_seconds=0)["approvals"] == 0


def test_the_resume_runs_every_minute_from_beat(settings):
    from payments.backoffice.tasks import refund_approvals_resume_task

    entry = settings.CELERY_BEAT_SCHEDULE["payments-refund-approvals-resume"]
    assert entry["task"] == refund_approvals_resume_task.name and entry["schedule"] == 60.0


def test_a_large_refund_split_into_small_ones_still_needs_a_second_approver(client, role_users, payment):
    """Four eyes were per request: a finance user could refund 10,000 of a payment whose threshold
    is 2,000 without anyone else, as five refunds of 2,000 (each "at or below the threshold" went
    straight to the PSP). The threshold now holds for what staff refund of a payment without an
    approval, all together: the refund that would take it above the threshold waits."""
    otp_force_login(client, role_users["finance"])
    for _ in range(5):
        assert client.post(refund_page(payment), {"amount": 2_000, **REASON}).status_code == 302
    sent = Refund.objects.filter(payment=payment).exclude(status=OperationStatus.FAILED)
    assert sum(r.amount for r in sent) == 2_000  # the first one: at the threshold
    assert [a.amount for a in RefundApproval.objects.filter(payment=payment)] == [2_000] * 4
    assert [op.reference for op in refunds_at_psp(payment)] == [r.pk for r in sent]
    outcomes = sorted(StaffAction.objects.filter(action="payments.refund").values_list("outcome", flat=True))
    assert outcomes == ["done"] + ["requested"] * 4


def test_an_approved_refund_does_not_count_against_the_threshold(role_users, payment, finance2):
    """What a second finance user approved was looked at by two: a small refund after it goes
    straight through again."""
    waiting = staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=5_000,
                                   reason=REASON["reason"]).approval
    refund_approval_approve(user=finance2, approval_id=waiting.pk, note="checked the return")
    again = staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=1_500,
                                 reason=REASON["reason"])
    assert again.approval is None and again.refund.status == OperationStatus.SUCCEEDED
