"""Dunning retries are counted from when the period's charge was due (1, 3, 5, 7 days), so a late
tick does not shift them. But a failure learnt late — a SEPA debit refused after days of
`processing`, or a scheduler that was down — found its next slots already past, and each was
retried on the very next tick: three debits of the same customer within three minutes, each a
refused off-session charge for the issuer (schemes penalise such bursts) and, for SEPA, a bank's
fee per return. A retry is now never sooner than the schedule's first delay (1 day) after a
failure that found its slot past; on time, the schedule is unchanged."""

from __future__ import annotations

import datetime as dt

import pytest

from payments.models import Subscription, SubscriptionCharge
from tests.scenarios.test_subscriptions import anchor, saved_card, subscribe, tick

pytestmark = [pytest.mark.scenario]


def test_a_failure_learnt_late_is_not_retried_in_a_burst(env):
    cus, cit = saved_card(env, "4000000000000341")  # off session: insufficient_funds
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    t0 = anchor(sub)
    assert Subscription.objects.get(pk=sub["id"]).next_charge_at == t0 + dt.timedelta(days=1)  # on schedule
    late = t0 + dt.timedelta(days=4)  # the scheduler comes back three days late: retry 1 fails
    tick(late)
    row = Subscription.objects.get(pk=sub["id"])
    assert row.status == "past_due" and row.retries == 2
    assert row.next_charge_at >= late + dt.timedelta(days=1), row.next_charge_at  # not t0 + 3 days (past)
    tick(late + dt.timedelta(minutes=1))
    tick(late + dt.timedelta(minutes=2))
    assert SubscriptionCharge.objects.filter(subscription_id=sub["id"]).count() == 2  # no burst
    tick(t0 + dt.timedelta(days=5))  # the schedule resumes: retry 2 at day 5
    assert SubscriptionCharge.objects.filter(subscription_id=sub["id"]).count() == 3
    assert Subscription.objects.get(pk=sub["id"]).next_charge_at == t0 + dt.timedelta(days=6)
