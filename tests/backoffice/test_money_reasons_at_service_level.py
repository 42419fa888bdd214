"""Money actions ask why at the service, not only in the admin's form (REASON_MIN_LENGTH).

The admin's ReasonForm wants a reason of at least `REASON_MIN_LENGTH` characters, and the
discrepancy services check it themselves, but `staff_refund_request` (a refund, or a refund
approval request) took any reason, an empty one included, and `payout_bank_file_export`, which
reveals merchants' clear bank accounts, took a one-character one: a caller other than the form (a
shell, a script, a future API) moved money or revealed accounts with no real "why" in the log.
Now each refuses it with `invalid_request_error` on `reason`, before doing anything."""

from __future__ import annotations

import pytest

from payera.backoffice.services import REASON_MIN_LENGTH
from payera.core.errors import InvalidRequestError
from payera.staff.access import staff_grant_merchant
from payments.backoffice.models import RefundApproval
from payments.backoffice.services import staff_booking_cancel, staff_refund_request
from payments.models import Booking, Refund
from reconciliation.models import Payout
from reconciliation.services import payout_bank_file_export, payout_settings_update
from tests.backoffice.staff import make_staff
from tests.helpers import confirmed_booking
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import BANK_ACCOUNT, make_payout

pytestmark = pytest.mark.django_db

SHORT = ["", "   ", "x", " ab c ", "x" * (REASON_MIN_LENGTH - 1)]


@pytest.mark.parametrize("amount", [1_000, 5_000])  # sent at once; an approval request
def test_a_staff_refund_needs_a_reason(role_users, payment, amount):
    for reason in SHORT:
        with pytest.raises(InvalidRequestError) as refused:
            staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=amount, reason=reason)
        assert refused.value.param == "reason"
    assert not Refund.objects.exists() and not RefundApproval.objects.exists()
    staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=amount, reason="ticket 12")
    assert Refund.objects.count() + RefundApproval.objects.count() == 1


def test_a_staff_booking_cancel_needs_a_reason(role_users, psp_settings, world):
    merchant = world["A"].merchant
    merchant.connectors = ["alpha"]
    merchant.save(update_fields=["connectors"])
    booking = confirmed_booking(merchant, amount=1_000, reference="why")
    for reason in SHORT:
        with pytest.raises(InvalidRequestError):
            staff_booking_cancel(user=role_users["finance"], booking_id=booking.pk, reason=reason)
    assert Booking.objects.get(pk=booking.pk).status == "confirmed"


def test_a_bank_file_needs_a_reason():
    merchant = MerchantFactory(name="A")
    payout = make_payout(merchant, gross=10_000, fee=300)
    payout_settings_update(merchant_id=merchant.id, bank_account=BANK_ACCOUNT, bank_account_holder="A GmbH")
    user = make_staff("fin", role="finance")
    staff_grant_merchant(user=user, merchant_id=merchant.id)
    status = Payout.objects.get(pk=payout.pk).status
    for reason in SHORT:
        with pytest.raises(InvalidRequestError) as refused:
            payout_bank_file_export(user=user, payout_ids=[payout.id], reason=reason)
        assert refused.value.param == "reason"
    assert Payout.objects.get(pk=payout.pk).status == status  # nothing exported
    assert payout_bank_file_export(user=user, payout_ids=[payout.id], reason="daily batch").payout_ids == (payout.id,)
