"""A return reopening an older period while a later period is in dunning (review finding).

Before: period 1 of a daily subscription was `past_due` (its charge declined `insufficient_funds`,
retry 1 due a day after it was due) when the bank returned period 0's SEPA debit. The return moved
the subscription back to period 0 (right), but once period 0 was paid again the subscription said
`active` and `subscription.recovered`, `last_error` null, period 1 due at once at its period start:
period 1's dunning was lost — its failure unsaid, its retry slot gone (charged off schedule), its
dunning start forgotten.

Now the later period's dunning is set aside while the older one is collected (`later_dunning`)
and taken up where it was (docs/payments.md "Subscriptions"): `past_due` on period 1 with its
tries, its dunning start, its last error and its retry slot; no `subscription.recovered` until
period 1 is paid too. Driven with the scheduler command on a simulated clock, beta's SEPA return
held back and delivered by us, alpha's cards for the later charges."""

from __future__ import annotations

import datetime as dt

import pytest

from payments.models import Subscription
from tests.scenarios.conftest import assert_ledger_sound
from tests.scenarios.test_subscription_debit_returned import (
    charge_of,
    daily_with_its_first_period_paid,
    return_delivered,
)
from tests.scenarios.test_subscriptions import events, saved_card, tick

pytestmark = [pytest.mark.scenario]


def test_a_return_of_an_older_period_keeps_the_later_periods_dunning(env, held):
    cus, _, sub, t0 = daily_with_its_first_period_paid(env, held)
    _, broke = saved_card(env, "4000000000000341", cus=cus)  # off session: insufficient_funds
    env.post(f"/v1/subscriptions/{sub['id']}", {"payment_method": broke["payment_method"]["id"]})
    tick(t0 + dt.timedelta(days=1))  # period 1 declines: past due, retry 1 a day later
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period, row.retries) == ("past_due", 1, 1)
    assert row.next_charge_at == t0 + dt.timedelta(days=2)
    period_1 = (row.dunning_started_at, row.last_error)

    return_delivered(env, held, sub["id"])  # period 0's debit comes back (MD06)
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period) == ("past_due", 0)

    _, good = saved_card(env, cus=cus)  # the customer gives a card: period 0's retry pays it
    env.post(f"/v1/subscriptions/{sub['id']}", {"payment_method": good["payment_method"]["id"]})
    paid_at = row.next_charge_at
    assert paid_at < t0 + dt.timedelta(days=2)  # before period 1's retry slot
    tick(paid_at)
    assert charge_of(sub["id"], 0, 1).status == "succeeded"
    row = Subscription.objects.get(pk=sub["id"])
    # period 1 is still unpaid, in its dunning as it was: not "active", not "recovered"
    assert (row.status, row.current_period, row.retries) == ("past_due", 1, 1), (row.status, row.current_period)
    assert row.next_charge_at == t0 + dt.timedelta(days=2)  # its retry slot, not at once
    assert (row.dunning_started_at, row.last_error) == period_1
    assert row.last_decline_code == "insufficient_funds" and row.later_dunning is None
    assert "subscription.recovered" not in events(env, sub["id"])
    assert tick(paid_at + dt.timedelta(minutes=1)) == {}  # not charged before its slot

    tick(t0 + dt.timedelta(days=2))  # period 1's retry, on the good card: paid, recovered
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period, row.retries, row.last_error) == ("active", 2, 0, None)
    assert charge_of(sub["id"], 1, 1).status == "succeeded"
    assert events(env, sub["id"])[-2:] == ["subscription.payment_succeeded", "subscription.recovered"]
    assert_ledger_sound()
