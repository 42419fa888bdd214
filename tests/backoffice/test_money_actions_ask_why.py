"""Every back-office action that moves money asks why first and is in the staff actions' log
(docs/backoffice.md "Actions: a reason, a permission, a service").

The payouts' "mark in transit / paid / failed" (paid and failed post ledger journals), the
bookings' "cancel" (voids the hold or refunds the escrow) and "expire", and the subscriptions'
"cancel" ran at the first click of the action menu: no reason asked, no `StaffAction` row. Who did
it was in the audit trail, never why, and none of them showed in the payment page's "back-office
actions" or the staff actions' log. Now each opens the reason page first, like a refund or a
key revocation, and records its outcome."""

from __future__ import annotations

import pytest
from django.utils import timezone

from payera.backoffice.models import StaffAction
from payera.staff.access import staff_grant_merchant
from tests.backoffice.staff import make_staff, otp_force_login
from tests.helpers import confirmed_booking, held_booking
from tests.merchants.factories import MerchantFactory

pytestmark = pytest.mark.django_db

REASON = "bank statement line 2026-12-07 #4411"


def _staff_of(client, merchant, role):
    user = make_staff(f"{role}-{merchant.pk[-6:]}", role=role)
    staff_grant_merchant(user=user, merchant_id=merchant.pk)
    otp_force_login(client, user)
    return user


def _ask_then_confirm(client, url, action, pk):
    """The action menu's POST: the reason page, nothing done. Then the page's POST with a reason."""
    page = client.post(url, {"action": action, "_selected_action": [pk]})
    assert page.status_code == 200 and b'name="reason"' in page.content, page.content[:500]
    return page, lambda: client.post(
        url, {"action": action, "_selected_action": [pk], "confirm": "1", "reason": REASON}, follow=True
    )


def _logged(user, action, pk) -> StaffAction:
    return StaffAction.objects.get(user=user, action=action, object_id=pk)


@pytest.mark.parametrize(
    ("action", "status_after"), [("mark_in_transit", "in_transit"), ("mark_paid", "paid"), ("mark_failed", "failed")]
)
def test_payout_marks_ask_why_and_are_logged(client, action, status_after):
    from reconciliation.models import Payout, PayoutStatus
    from reconciliation.services import payout_mark_in_transit
    from tests.reconciliation.helpers import make_payout

    merchant = MerchantFactory()
    payout = make_payout(merchant)
    if action != "mark_in_transit":
        payout_mark_in_transit(payout_id=payout.id)
    before = Payout.objects.get(pk=payout.id).status
    user = _staff_of(client, merchant, "finance")
    _, confirm = _ask_then_confirm(client, "/admin/reconciliation/payout/", action, payout.id)
    assert Payout.objects.get(pk=payout.id).status == before  # nothing yet
    assert confirm().status_code == 200
    assert Payout.objects.get(pk=payout.id).status == PayoutStatus(status_after)
    logged = _logged(user, f"reconciliation.payout_{action}", payout.id)
    assert (logged.reason, logged.outcome, logged.merchant_id) == (REASON, "done", merchant.pk)
    if action == "mark_failed":  # the merchant's failure reason never carries the staff's words
        assert REASON not in Payout.objects.get(pk=payout.id).failure_reason


def test_a_payout_mark_the_service_refuses_is_logged_refused(client):
    from reconciliation.models import Payout
    from tests.reconciliation.helpers import make_payout

    merchant = MerchantFactory()
    payout = make_payout(merchant)  # pending: not in transit, can not be paid
    user = _staff_of(client, merchant, "finance")
    _, confirm = _ask_then_confirm(client, "/admin/reconciliation/payout/", "mark_paid", payout.id)
    page = confirm()
    assert Payout.objects.get(pk=payout.id).status == payout.status
    assert _logged(user, "reconciliation.payout_mark_paid", payout.id).outcome == "refused"
    assert "only a payout in transit can be paid" in page.content.decode()


def test_booking_cancel_asks_why_and_is_logged(client, psp_settings):
    from payments.models import Booking

    merchant = MerchantFactory(connectors=["alpha"])
    booking = confirmed_booking(merchant, amount=1000, reference="why")
    user = _staff_of(client, merchant, "finance")
    _, confirm = _ask_then_confirm(client, "/admin/payments/booking/", "cancel_bookings", booking.id)
    assert Booking.objects.get(pk=booking.id).status == "confirmed"
    confirm()
    booking.refresh_from_db()
    assert (booking.status, booking.amount_refunded) == ("canceled", 1000)  # the escrow went back
    logged = _logged(user, "payments.booking_cancel", booking.id)
    assert (logged.reason, logged.outcome, logged.merchant_id) == (REASON, "done", merchant.pk)


def test_booking_expire_asks_why_and_is_logged(client, psp_settings):
    from payments.models import Booking

    merchant = MerchantFactory(connectors=["alpha"])
    booking = held_booking(merchant, amount=500, reference="why-expire")
    Booking.objects.filter(pk=booking.pk).update(hold_expires_at=timezone.now() - timezone.timedelta(minutes=1))
    user = _staff_of(client, merchant, "operations")
    _, confirm = _ask_then_confirm(client, "/admin/payments/booking/", "expire_bookings", booking.id)
    assert Booking.objects.get(pk=booking.id).status == "held"
    confirm()
    assert Booking.objects.get(pk=booking.id).status == "expired"
    assert _logged(user, "payments.booking_expire", booking.id).outcome == "done"


def test_subscription_cancel_asks_why_and_is_logged(client):
    from payments.models import Subscription
    from tests.payments.test_subscriptions_api import saved

    merchant = MerchantFactory()
    pm = saved(merchant)
    sub = Subscription.objects.create(
        merchant=merchant,
        customer=pm.customer,
        payment_method=pm,
        amount=900,
        currency="EUR",
        interval="month",
        anchor=timezone.now(),
    )
    user = _staff_of(client, merchant, "operations")
    _, confirm = _ask_then_confirm(client, "/admin/payments/subscription/", "cancel_subscriptions", sub.id)
    assert Subscription.objects.get(pk=sub.id).status != "canceled"
    confirm()
    assert Subscription.objects.get(pk=sub.id).status == "canceled"
    logged = _logged(user, "payments.subscription_cancel", sub.id)
    assert (logged.reason, logged.outcome, logged.merchant_id) == (REASON, "done", merchant.pk)
