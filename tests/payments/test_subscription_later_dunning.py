"""The later period's charge that was under way when an older period's debit was returned, and
failed while the older one was collected (docs/payments.md "Subscriptions", `later_dunning`).

Before: its failure was only counted (its charge row) and, once the older period was paid, the
subscription said `active` + `subscription.recovered`, the later period due at once at its start,
its error and its dunning forgotten. Now its dunning is kept as it would have gone (retry 1 a day
after the period was due) and taken up once the older period is paid: `past_due` on it, no
`recovered`. The settle service on the real database; the charges' payments are rows in the
states their PSP left them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from payera.events.models import Event
from payments.models import Payment, Subscription, SubscriptionCharge
from payments.services.subscriptions import subscription_charge_settle
from tests.payments.test_subscriptions_api import saved

pytestmark = pytest.mark.django_db


def charge(
    sub, period: int, try_number: int, *, status: str = "pending", payment: str | None = None, error: dict | None = None
) -> SubscriptionCharge:
    pay = None
    if payment:
        pay = Payment.objects.create(
            merchant=sub.merchant,
            amount=sub.amount,
            currency="EUR",
            payment_method=sub.payment_method,
            customer=sub.customer,
            off_session=True,
        )
        Payment.objects.filter(pk=pay.pk).update(status=payment, last_error=error)
    return SubscriptionCharge.objects.create(
        subscription=sub,
        period=period,
        try_number=try_number,
        idempotency_key=f"{sub.id}:p{period}:t{try_number}",
        payment=pay,
        status=status,
    )


def test_a_later_period_failing_while_an_older_one_is_collected_keeps_its_dunning(merchant):
    pm = saved(merchant)
    t0 = timezone.now().replace(microsecond=0) - dt.timedelta(days=30)
    returned_at = t0 + dt.timedelta(days=1, hours=2)
    sub = Subscription.objects.create(
        merchant=merchant,
        customer=pm.customer,
        payment_method=pm,
        amount=900,
        currency="EUR",
        interval="day",
        anchor=t0,
    )
    # period 0 was paid, period 1's debit was made (under way), then period 0's debit was returned
    Subscription.objects.filter(pk=sub.pk).update(
        status="past_due",
        current_period=0,
        retries=1,
        dunning_started_at=returned_at,
        next_charge_at=returned_at + dt.timedelta(days=1),
        last_decline_code="debit_returned",
    )
    charge(sub, 0, 0, status="returned")
    declined = {"code": "card_declined", "decline_code": "insufficient_funds", "message": "Insufficient funds"}
    later = charge(sub, 1, 0, payment="failed", error=declined)

    assert subscription_charge_settle(charge_id=later.pk, now_=returned_at + dt.timedelta(hours=1)) == "failed"
    row = Subscription.objects.get(pk=sub.pk)
    assert (row.status, row.current_period) == ("past_due", 0)  # still collecting period 0

    paid = charge(sub, 0, 1, payment="succeeded")  # period 0's retry pays it
    at = returned_at + dt.timedelta(hours=3)
    assert subscription_charge_settle(charge_id=paid.pk, now_=at) == "succeeded"
    row = Subscription.objects.get(pk=sub.pk)
    assert (row.status, row.current_period, row.retries) == ("past_due", 1, 1)
    assert row.next_charge_at == t0 + dt.timedelta(days=2)  # retry 1: a day after period 1 was due
    assert row.dunning_started_at == t0 + dt.timedelta(days=1)
    assert row.last_decline_code == "insufficient_funds" and row.last_error == declined
    assert not Event.objects.filter(type="subscription.recovered", data__object__id=sub.id).exists()


def test_a_later_period_whose_debit_is_still_processing_is_not_charged_twice_once_the_older_is_paid(merchant):
    """Period 1's SEPA debit was under way (processing) when period 0's debit was returned; period 0
    is paid again while period 1's debit is still processing. The subscription goes on with period
    1, whose try 0 is still under way: the next claim takes up that try (its payment, replayed by its
    key), it does not open try 1 — a second debit of period 1 that, both collected, takes it twice."""
    from payments.services.subscriptions import _charge_claim

    pm = saved(merchant)
    t0 = timezone.now().replace(microsecond=0) - dt.timedelta(days=30)
    returned_at = t0 + dt.timedelta(days=1, hours=2)
    sub = Subscription.objects.create(
        merchant=merchant, customer=pm.customer, payment_method=pm, amount=900, currency="EUR", interval="day",
        anchor=t0,
    )
    Subscription.objects.filter(pk=sub.pk).update(
        status="past_due", current_period=0, retries=1, dunning_started_at=returned_at,
        next_charge_at=returned_at + dt.timedelta(days=1), last_decline_code="debit_returned",
    )
    charge(sub, 0, 0, status="returned")
    under_way = charge(sub, 1, 0, payment="processing")
    paid = charge(sub, 0, 1, payment="succeeded")
    at = returned_at + dt.timedelta(hours=3)
    assert subscription_charge_settle(charge_id=paid.pk, now_=at) == "succeeded"
    row = Subscription.objects.get(pk=sub.pk)
    assert (row.status, row.current_period) == ("active", 1)

    assert _charge_claim(subscription_id=sub.pk, at=at + dt.timedelta(minutes=1)) == under_way.pk
    assert SubscriptionCharge.objects.filter(subscription=sub, period=1).count() == 1
