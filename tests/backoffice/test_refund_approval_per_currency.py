"""Four eyes on staff refunds (docs/backoffice.md "Four eyes on refunds"): the merchant's threshold is
per currency, and refunds of one payment racing each other under it do not both pass alone.

Before: `refund_approval_threshold` was one number "in minor units of the payment's currency": the
default 50000 is 500.00 EUR but ¥50,000 (JPY has no decimals) and 50.000 BHD. Now it is in
hundredths of the major unit, scaled to the payment currency's ISO 4217 exponent (500.00 EUR, ¥500,
500.000 BHD), and `refund_approval_thresholds` names a currency's own threshold in its minor units.
Real payments at the (real, sandbox) alpha PSP, on PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from payments.backoffice.models import RefundApproval
from payments.backoffice.services import staff_refund_request
from payments.models import OperationStatus, Refund
from payments.services import payment_create
from payments.services.common import PaymentInProgressError
from tests.backoffice.payments import APPROVED, card, settle

pytestmark = pytest.mark.django_db

REASON = "ticket 4711: goods returned"


def yen_payment(merchant, amount: int = 10_000):
    if merchant.connectors != ["alpha"]:
        merchant.connectors = ["alpha"]
        merchant.save(update_fields=["connectors"])
    payment = payment_create(merchant=merchant, amount=amount, currency="JPY", payment_method_data=card(APPROVED))
    return settle(payment.pk)


def test_the_threshold_is_scaled_to_the_currency_and_a_table_names_its_own(world):
    merchant = world["A"].merchant
    merchant.refund_approval_threshold = 50_000
    assert merchant.refund_approval_threshold_for("EUR") == 50_000  # 500.00 EUR, as before
    assert merchant.refund_approval_threshold_for("JPY") == 500  # ¥500, not ¥50,000
    assert merchant.refund_approval_threshold_for("BHD") == 500_000  # 500.000 BHD, not 50.000
    merchant.refund_approval_thresholds = {"JPY": 80_000}
    assert (
        merchant.refund_approval_threshold_for("jpy") == 80_000
        and merchant.refund_approval_threshold_for("EUR") == 50_000
    )
    merchant.refund_approval_threshold = 0  # 0: every staff refund needs a second finance user
    assert merchant.refund_approval_threshold_for("USD") == 0


def test_a_yen_refund_above_the_default_in_yen_waits_for_a_second_finance_user(psp_settings, world, role_users):
    """Before: ¥3,000 was "under 50000 minor units" and went to the PSP on one user's word."""
    merchant = world["A"].merchant
    assert merchant.refund_approval_threshold == 50_000  # the default: 500.00 of the major unit
    payment = yen_payment(merchant)
    result = staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=3_000, reason=REASON)
    assert result.refund is None and (result.approval.amount, result.approval.currency) == (3_000, "JPY")
    assert not Refund.objects.filter(payment=payment).exists()
    # ¥500 goes straight through
    small = staff_refund_request(user=role_users["finance"], payment_id=payment.pk, amount=500, reason=REASON)
    assert small.approval is None and small.refund.status == OperationStatus.SUCCEEDED


def test_the_merchants_table_names_a_currencys_threshold_and_splitting_still_counts(psp_settings, world, role_users):
    merchant = world["A"].merchant
    merchant.refund_approval_thresholds = {"JPY": 5_000}
    merchant.save(update_fields=["refund_approval_thresholds"])
    payment = yen_payment(merchant)
    fin = role_users["finance"]
    first = staff_refund_request(user=fin, payment_id=payment.pk, amount=3_000, reason=REASON)
    assert first.approval is None and first.refund.status == OperationStatus.SUCCEEDED
    second = staff_refund_request(user=fin, payment_id=payment.pk, amount=3_000, reason=REASON)  # 6,000 alone
    assert second.refund is None and second.approval.amount == 3_000


@pytest.mark.django_db(transaction=True)
def test_two_refunds_of_one_payment_racing_under_the_threshold_do_not_both_pass(four_eyes_merchant, payment):
    """Two finance users refund 1,500 each of one payment at the same moment, under a threshold of
    2,000 (together 3,000). Real threads on PostgreSQL: the payment's lock serializes them
    (`refund_create` counts the refunds made alone under it): one is sent, the other waits for a
    second user or, while the first is still at the PSP, is refused as busy (409, nothing moved), and
    asked again it waits."""
    from payera.staff.access import staff_grant_merchant
    from tests.backoffice.staff import make_staff

    merchant = four_eyes_merchant
    users = [make_staff(f"fin{n}", role="finance") for n in range(2)]
    for user in users:
        staff_grant_merchant(user=user, merchant_id=merchant.pk)
    start, answers = threading.Barrier(2), []

    def refund(user):
        try:
            start.wait()
            result = staff_refund_request(user=user, payment_id=payment.pk, amount=1_500, reason=REASON)
            answers.append("sent" if result.refund is not None else "waits")
        except PaymentInProgressError:
            answers.append("busy")
        finally:
            connection.close()

    threads = [threading.Thread(target=refund, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(answers) in (["sent", "waits"], ["busy", "sent"])
    assert Refund.objects.filter(payment=payment).exclude(status=OperationStatus.FAILED).count() == 1
    if "busy" in answers:
        again = staff_refund_request(user=users[1], payment_id=payment.pk, amount=1_500, reason=REASON)
        assert again.refund is None
    assert Refund.objects.filter(payment=payment).exclude(status=OperationStatus.FAILED).count() == 1
    assert RefundApproval.objects.filter(payment=payment, status="pending").count() == 1


def test_a_table_with_an_unknown_currency_or_a_negative_amount_is_refused(world):
    from django.core.exceptions import ValidationError

    merchant = world["A"].merchant
    for table in ({"XYZ": 5}, {"JPY": -1}, {"JPY": "5000"}, ["JPY"]):
        merchant.refund_approval_thresholds = table
        with pytest.raises(ValidationError, match="refund_approval_thresholds"):
            merchant.full_clean(exclude=["status"])  # as the merchant form does (status is protected)
    merchant.refund_approval_thresholds = {"JPY": 0, "KWD": 150_000}
    merchant.full_clean(exclude=["status"])


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_a_threshold_set_in_a_currency_without_two_decimals():
    """A JPY merchant's 50000 meant ¥50,000: it stays {"JPY": 50000}; a EUR merchant's 2000 means
    20.00 EUR as before, without an entry."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from payera.merchants.models import Merchant
    from tests.merchants.factories import MerchantFactory

    eur, jpy = MerchantFactory(), MerchantFactory(default_currency="JPY")
    executor = MigrationExecutor(connection)
    before = [("merchants", "0002_merchant_refund_threshold_action_perms")]
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps.get_model("merchants", "Merchant")
        old.objects.filter(pk=eur.pk).update(refund_approval_threshold=2_000)
        old.objects.filter(pk=jpy.pk).update(refund_approval_threshold=50_000)
        executor = MigrationExecutor(connection)
        executor.migrate([("merchants", "0003_merchant_refund_thresholds_per_currency")])
        rows = {m.pk: (m.refund_approval_thresholds, m.refund_approval_threshold) for m in Merchant.objects.all()}
        assert rows[eur.pk] == ({}, 2_000) and rows[jpy.pk] == ({"JPY": 50_000}, 50_000)
        assert Merchant.objects.get(pk=jpy.pk).refund_approval_threshold_for("JPY") == 50_000
        assert Merchant.objects.get(pk=eur.pk).refund_approval_threshold_for("EUR") == 2_000
    finally:  # the later migrations back, for the tests after this one in the same database
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
