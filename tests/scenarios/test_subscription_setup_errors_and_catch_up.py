"""Two subscription behaviours a merchant meets only when something went wrong on its side, pinned
as documented (docs/api.md "Subscriptions": "When the charge cannot be made" and "A scheduler that
was down"), not changed:

- A charge refused before any payment because of the merchant's own setup — its routing no longer
  has a connector for the method and currency (`payment_method_unsupported`) — is a hard failure like
  a detached method: `unpaid` at once, no dunning. Once the setup is fixed, giving the subscription
  its payment method again (the resume) charges the period in progress.
- After a scheduler outage, each subscription catches up the periods it missed one per tick (every
  period that began is charged: each was served), a daily subscription down three days making three
  charges on three consecutive ticks.

Driven by the scheduler command on a simulated clock against the real sandboxes and database."""

from __future__ import annotations

import datetime as dt

import pytest

from payments.models import Subscription, SubscriptionCharge
from payments.recurring import add_months
from tests.scenarios.test_subscriptions import anchor, events, saved_card, subscribe, tick

pytestmark = [pytest.mark.scenario]


def test_a_setup_error_ends_the_subscription_unpaid_at_once_and_a_resume_recovers_it(env):
    cus, cit = saved_card(env)
    pm = cit["payment_method"]["id"]
    sub = subscribe(env, cus, pm)
    end = add_months(anchor(sub), 1)
    connectors = env.merchant.connectors
    env.merchant.connectors = []  # the merchant's routing takes the card's currency no more
    env.merchant.save(update_fields=["connectors"])
    assert tick(end) == {"failed": 1}
    got = env.http.get(f"/v1/subscriptions/{sub['id']}").json()
    assert (got["status"], got["next_charge_at"], got["last_error"]["code"]) == (
        "unpaid",
        None,
        "payment_method_unsupported",
    )
    assert events(env, sub["id"])[-2:] == ["subscription.payment_failed", "subscription.unpaid"]
    assert tick(end + dt.timedelta(days=3)) == {}  # no dunning retry

    env.merchant.connectors = connectors  # fixed: the same method given again resumes it
    env.merchant.save(update_fields=["connectors"])
    got = env.post(f"/v1/subscriptions/{sub['id']}", {"payment_method": pm})
    assert (got["status"], got["current_period"]) == ("active", 2)


def test_a_scheduler_down_three_periods_charges_them_one_per_tick(env):
    cus, cit = saved_card(env)
    sub = subscribe(env, cus, cit["payment_method"]["id"], interval="day")
    t0 = anchor(sub)
    back = t0 + dt.timedelta(days=3, hours=1)  # periods 1, 2 and 3 began while it was down
    for n, minute in enumerate(range(3), start=2):
        assert tick(back + dt.timedelta(minutes=minute)) == {"succeeded": 1}
        assert Subscription.objects.get(pk=sub["id"]).current_period == n
    assert tick(back + dt.timedelta(minutes=3)) == {}  # caught up: period 4 begins at t0 + 4 days
    assert list(
        SubscriptionCharge.objects.filter(subscription_id=sub["id"]).order_by("period").values_list("period", "status")
    ) == [(p, "succeeded") for p in range(4)]
