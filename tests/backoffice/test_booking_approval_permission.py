"""Who may approve a booking cancel waiting for four eyes (a `RefundApproval` with `booking`,
migration payments_backoffice 0002): approving it cancels the booking and refunds its escrow, so
the approver needs `payments.refund_booking` besides the approval and refund permissions.

What was wrong: the approval's page offered "Approve" to any finance-like user holding
`payments_backoffice.approve_refundapproval` and `payments.refund_payment`, and its approve page
opened for them, although the service refuses them (it checks `refund_booking`): a staff member
without it was offered an action that could only fail, and a POST made by hand ran the service to
have it refuse. Now the page offers no "Approve" for a booking approval to them (still for a
payment approval, and "Reject" stays), and the approve page answers 403 to GET and POST with
nothing changed and nothing recorded, as for any user without the approval permission.

Object-level (django-guardian): the roles' permissions are global; an object grant of
`refund_booking` on the booking does not make its holder an approver (the service would refuse
them too: page and service agree), and a finance user not granted the booking's merchant sees no
such approval at all.
"""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission

from payera.backoffice.models import StaffAction
from payera.staff.access import object_access_grant, staff_grant_merchant
from payments.backoffice.models import RefundApproval
from payments.backoffice.services import StaffPermissionError, refund_approval_approve, staff_refund_request
from payments.models import Booking, Refund
from tests.backoffice.payments import APPROVED, pay
from tests.backoffice.staff import make_staff, otp_force_login
from tests.helpers import confirmed_booking

pytestmark = pytest.mark.django_db

APPROVALS = "/admin/payments_backoffice/refundapproval/"
REASON = "ticket 4711: stay canceled by the hotel"


@pytest.fixture
def merchant(four_eyes_merchant):
    return four_eyes_merchant


def approver_without_refund_booking(merchant, name: str = "payments-approver"):
    """Approves payment refunds (and may reject anything), but may not refund a booking's escrow."""
    user = make_staff(name)
    for perm in (
        "payments_backoffice.view_refundapproval",
        "payments_backoffice.approve_refundapproval",
        "payments.refund_payment",
        "payments.view_payment",
        "payments.view_booking",
    ):
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    staff_grant_merchant(user=user, merchant_id=merchant.pk)
    return user


def booking_approval(merchant, requester) -> RefundApproval:
    from payments.backoffice.services import staff_booking_cancel

    booking = confirmed_booking(merchant, amount=10_000, reference="stay-1")
    approval = staff_booking_cancel(user=requester, booking_id=booking.id, reason=REASON).approval
    assert approval is not None and approval.booking_id == booking.id
    return approval


def url(approval, action: str = "change") -> str:
    return f"{APPROVALS}{quote(approval.pk)}/{action}/"


def assert_untouched(approval) -> None:
    approval.refresh_from_db()
    assert (approval.status, approval.decided_by, approval.refund_id) == ("pending", None, None)
    booking = Booking.objects.get(pk=approval.booking_id)
    assert (booking.status, booking.amount_refunded, booking.refund_id) == ("confirmed", 0, None)
    assert not Refund.objects.filter(payment_id=approval.payment_id).exists()


def test_no_approve_button_nor_approve_page_for_staff_without_refund_booking(client, role_users, merchant):
    approval = booking_approval(merchant, role_users["finance"])
    user = approver_without_refund_booking(merchant)
    otp_force_login(client, user)
    page = client.get(url(approval))
    assert page.status_code == 200
    assert b'id="bo-approve"' not in page.content and b'id="bo-reject"' in page.content
    assert client.get(url(approval, "approve")).status_code == 403
    assert client.post(url(approval, "approve"), {"reason": "looks fine to me"}).status_code == 403
    assert_untouched(approval)
    assert not StaffAction.objects.filter(action="payments.refund_approve").exists()
    with pytest.raises(StaffPermissionError):
        refund_approval_approve(user=user, approval_id=approval.pk, note="by hand")
    assert_untouched(approval)

    # a payment refund's approval is theirs to give: the button is there
    payment = pay(merchant, amount=10_000, number=APPROVED, connectors=["alpha"])
    other = staff_refund_request(
        user=role_users["finance"], payment_id=payment.pk, amount=5_000, reason=REASON
    ).approval
    assert b'id="bo-approve"' in client.get(url(other)).content


def test_an_object_grant_of_refund_booking_on_the_booking_does_not_make_an_approver(client, role_users, merchant):
    approval = booking_approval(merchant, role_users["finance"])
    user = approver_without_refund_booking(merchant, "object-granted")
    object_access_grant(user_or_group=user, obj=Booking.objects.get(pk=approval.booking_id), perm="refund_booking")
    assert user.has_perm("payments.refund_booking", Booking.objects.get(pk=approval.booking_id))  # guardian
    otp_force_login(client, user)
    assert b'id="bo-approve"' not in client.get(url(approval)).content
    assert client.post(url(approval, "approve"), {"reason": "looks fine to me"}).status_code == 403
    with pytest.raises(StaffPermissionError):
        refund_approval_approve(user=user, approval_id=approval.pk, note="by hand")
    assert_untouched(approval)


def test_a_finance_user_of_another_merchant_can_not_see_or_approve_a_booking_cancel(
    client, role_users, merchant, world
):
    approval = booking_approval(merchant, role_users["finance"])
    other = make_staff("finance-b", role="finance")  # every permission, but merchant B's only
    staff_grant_merchant(user=other, merchant_id=world["B"].merchant.pk)
    otp_force_login(client, other)
    assert client.get(APPROVALS).context["cl"].result_list.count() == 0
    assert client.get(url(approval)).status_code == 302  # "does not exist"
    assert client.post(url(approval, "approve"), {"reason": "looks fine to me"}).status_code == 404
    assert_untouched(approval)


def test_a_finance_user_with_refund_booking_is_offered_and_gives_the_approval(client, role_users, merchant, finance2):
    approval = booking_approval(merchant, role_users["finance"])
    otp_force_login(client, finance2)
    assert b'id="bo-approve"' in client.get(url(approval)).content
    assert client.get(url(approval, "approve")).status_code == 200
    assert client.post(url(approval, "approve"), {"reason": "hotel confirmed"}).status_code == 302
    approval.refresh_from_db()
    assert approval.status == "sent"
    assert Booking.objects.get(pk=approval.booking_id).status == "canceled"
