"""Operations' "Re-run recovery" of one payment (`staff_payment_recover`, now `payment_recover`:
recovery's own step, d3b931d) still does what its former copy did: a crashed capture and a
crashed cancel of THAT payment are resolved now whatever their schedule, and nothing of another
payment is touched. Coverage for the refactor: the copy's captures, refunds and cancels had no
test of their own (only its attempts, tests/backoffice/test_payments_admin.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from payments.models import PS, Capture, OperationStatus, Payment
from payments.services.payments import _capture_begin
from tests.helpers import authorized_payment
from tests.merchants.factories import MerchantFactory

pytestmark = [pytest.mark.django_db]

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def _crashed_capture(merchant, payment: Payment) -> Capture:
    """A capture request that died after committing its row and claim, before its PSP call; its
    next scheduled inquiry is an hour away."""
    capture = _capture_begin(merchant=merchant, payment_id=payment.id, amount=None, actor="test")
    old = timezone.now() - dt.timedelta(minutes=10)
    Capture.objects.filter(pk=capture.pk).update(created_at=old, next_inquiry_at=timezone.now() + dt.timedelta(hours=1))
    Payment.objects.filter(pk=payment.pk).update(inflight_at=old)
    return capture


def test_staff_recovery_resolves_the_payments_crashed_capture_and_cancel_and_only_its_own(psp_settings):
    from payments.backoffice.services import staff_payment_recover
    from tests.backoffice.staff import make_staff

    merchant = MerchantFactory(connectors=["alpha"])
    mine, other = authorized_payment(merchant), authorized_payment(merchant)
    mine_capture, other_capture = _crashed_capture(merchant, mine), _crashed_capture(merchant, other)
    staff = make_staff("ops", superuser=True)

    counts = staff_payment_recover(user=staff, payment_id=mine.id)
    assert (counts["captures"], counts["refunds"], counts["cancels"]) == (1, 0, 0), counts
    mine_capture.refresh_from_db()
    assert mine_capture.status == OperationStatus.FAILED  # alpha never got it: it did not happen
    assert Payment.objects.get(pk=mine.id).inflight == ""  # the crashed request's claim is released
    other_capture.refresh_from_db()
    assert other_capture.status == OperationStatus.PENDING  # another payment's: untouched
    assert Payment.objects.get(pk=other.id).inflight == "capture"

    # a cancel whose request crashed: its claim, past the grace period; alpha still holds it
    # authorized, so the claim is released (the merchant may cancel again)
    old = timezone.now() - dt.timedelta(minutes=10)
    Payment.objects.filter(pk=mine.id).update(inflight="cancel", inflight_at=old)
    counts = staff_payment_recover(user=staff, payment_id=mine.id)
    assert counts["cancels"] == 1, counts
    payment = Payment.objects.get(pk=mine.id)
    assert (payment.status, payment.inflight) == (PS.REQUIRES_CAPTURE, "")
    assert Payment.objects.get(pk=other.id).inflight == "capture"
