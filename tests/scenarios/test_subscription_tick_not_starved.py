"""A subscription whose charge is still `processing` (an asynchronous PSP such as beta, or a SEPA
debit that settles days later) stays due until the charge settles. Each tick took the due
subscriptions oldest first, up to its limit, and such a subscription — the oldest due, since its
`next_charge_at` is the period it is still paying — took a slot in every tick only to replay its
processing payment and answer `pending`. With as many of them as the tick's limit (500 SEPA
subscriptions in one settlement window), no other subscription was ever charged: periods went
unbilled for as long as the debits took to settle. A processing charge needs no tick (the first
loop settles it once its payment has ended), so the due loop skips it."""

from __future__ import annotations

import datetime as dt

import pytest

from payments.models import Subscription, SubscriptionCharge
from payments.recurring import add_months
from payments.services import subscriptions_run
from tests.scenarios.test_subscriptions import anchor, saved_card, subscribe

pytestmark = [pytest.mark.scenario]


def test_a_processing_charge_does_not_take_the_tick_from_other_due_subscriptions(env):
    cus_b, cit_b = saved_card(env)  # alpha answers at once: B's period 0 is paid
    sub_b = subscribe(env, cus_b, cit_b["payment_method"]["id"])
    assert sub_b["current_period"] == 1
    env.merchant.connectors = ["beta"]  # beta answers "received": A's charge stays processing
    env.merchant.save(update_fields=["connectors"])
    cus_a, cit_a = saved_card(env)
    env.wait(cit_a["id"], lambda p: p["status"] == "succeeded")
    sub_a = subscribe(env, cus_a, cit_a["payment_method"]["id"])
    charge_a = SubscriptionCharge.objects.get(subscription_id=sub_a["id"])
    assert charge_a.status == "pending" and env.get(charge_a.payment_id)["status"] == "processing"
    env.merchant.connectors = ["alpha"]
    env.merchant.save(update_fields=["connectors"])

    due_b = add_months(anchor(sub_b), 1) + dt.timedelta(seconds=1)  # A is due too (since its anchor)
    counts = subscriptions_run(now_=due_b, limit=1)
    assert counts == {"succeeded": 1}, counts
    assert Subscription.objects.get(pk=sub_b["id"]).current_period == 2  # B's period 1 was charged
    assert SubscriptionCharge.objects.filter(subscription_id=sub_a["id"]).count() == 1  # A: its one charge

    env.wait(charge_a.payment_id, lambda p: p["status"] == "succeeded")
    assert subscriptions_run(now_=due_b, limit=1)["settled_succeeded"] == 1  # A settles once it has ended
    assert Subscription.objects.get(pk=sub_a["id"]).current_period >= 1
    assert SubscriptionCharge.objects.get(pk=charge_a.pk).status == "succeeded"
