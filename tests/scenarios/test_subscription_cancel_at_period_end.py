"""Cancel at the end of the period (docs/api.md "Subscriptions").

Before: a subscription could only be canceled at once (`POST /v1/subscriptions/{id}/cancel`); a
customer who stopped mid-month lost the rest of the month they had paid for, or the merchant had
to remember to cancel it on the right day.

Now `POST /v1/subscriptions/{id}` with `cancel_at_period_end: true` (while `active`) leaves it
running until the period paid last ends; at that moment the scheduler cancels it
(`subscription.canceled`, `canceled_at` = that period's end) instead of charging the next one.
No charge is made after the flag is set — not even one the scheduler had claimed just before
(its payment not made yet). `false` before the end resumes normal renewal. Past due or unpaid:
400 (nothing paid to run out: cancel it now). Driven by the scheduler command on a simulated
clock against the real sandboxes and database."""

from __future__ import annotations

import datetime as dt

import pytest

from payera.events.models import Event
from payments.models import Payment, Subscription, SubscriptionCharge
from payments.recurring import add_months
from payments.services import subscription_charge
from payments.services.subscriptions import _charge_claim
from tests.scenarios.conftest import assert_ledger_sound
from tests.scenarios.test_subscriptions import anchor, events, saved_card, subscribe, tick

pytestmark = [pytest.mark.scenario]


def charges(sub_id: str) -> list[tuple[int, int, str]]:
    return list(
        SubscriptionCharge.objects.filter(subscription_id=sub_id)
        .order_by("period", "try_number")
        .values_list("period", "try_number", "status")
    )


def test_set_it_ends_at_the_period_end_and_nothing_more_is_charged(env):
    cus, cit = saved_card(env)
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    t0 = anchor(sub)
    end = add_months(t0, 1)
    got = env.post(f"/v1/subscriptions/{sub['id']}", {"cancel_at_period_end": True})
    assert (got["status"], got["cancel_at_period_end"]) == ("active", True)
    assert got["cancel_at"] == int(end.timestamp()) and got["next_charge_at"] is None
    assert events(env, sub["id"])[-1] == "subscription.updated"
    assert tick(t0 + dt.timedelta(days=20)) == {}  # mid-period: it runs on
    assert Subscription.objects.get(pk=sub["id"]).status == "active"

    assert tick(end) == {"canceled": 1}  # the period's end: canceled instead of charged
    done = env.http.get(f"/v1/subscriptions/{sub['id']}").json()
    assert (done["status"], done["canceled_at"], done["next_charge_at"]) == ("canceled", int(end.timestamp()), None)
    assert events(env, sub["id"])[-1] == "subscription.canceled"
    assert tick(add_months(t0, 2)) == {}
    assert charges(sub["id"]) == [(0, 0, "succeeded")]
    assert Payment.objects.filter(metadata__subscription=sub["id"]).count() == 1
    assert_ledger_sound()


def test_unset_before_the_end_it_renews_as_usual(env):
    cus, cit = saved_card(env)
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    t0 = anchor(sub)
    env.post(f"/v1/subscriptions/{sub['id']}", {"cancel_at_period_end": True})
    got = env.post(f"/v1/subscriptions/{sub['id']}", {"cancel_at_period_end": False})
    assert (got["cancel_at_period_end"], got["cancel_at"]) == (False, None)
    assert got["next_charge_at"] == int(add_months(t0, 1).timestamp())
    tick(add_months(t0, 1))
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period) == ("active", 2)
    assert charges(sub["id"]) == [(0, 0, "succeeded"), (1, 0, "succeeded")]


def test_a_period_the_scheduler_claimed_before_the_flag_is_not_charged(env, monkeypatch):
    """A tick claimed period 1 (its charge row, committed) and was about to make the payment when
    the merchant set the flag: the payment's insert sees the flag under the subscription's lock and
    makes nothing (the tick is replayed from its claim: `_charge_claim` answers the row it made);
    the next tick ends the subscription, the claimed try failed, never sent."""
    from payments.services import subscriptions as svc

    cus, cit = saved_card(env)
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    end = add_months(anchor(sub), 1)
    charge_id = _charge_claim(subscription_id=sub["id"], at=end)  # the tick's claim...
    env.post(f"/v1/subscriptions/{sub['id']}", {"cancel_at_period_end": True})  # ...then the flag
    with monkeypatch.context() as m:  # ...then that tick goes on with its claimed row
        m.setattr(svc, "_charge_claim", lambda **_: charge_id)
        assert subscription_charge(subscription_id=sub["id"], now_=end) == "pending"
    assert Payment.objects.filter(metadata__subscription=sub["id"]).count() == 1  # period 0's only
    assert tick(end + dt.timedelta(minutes=1)) == {"canceled": 1}
    assert SubscriptionCharge.objects.get(pk=charge_id).status == "failed"
    assert Subscription.objects.get(pk=sub["id"]).status == "canceled"
    assert Payment.objects.filter(metadata__subscription=sub["id"]).count() == 1


def test_only_an_active_subscription_can_be_set_to_end_at_its_period_end(env):
    cus, cit = saved_card(env, "4000000000000341")  # off session: insufficient_funds, past due
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    assert sub["status"] == "past_due"
    r = env.post(f"/v1/subscriptions/{sub['id']}", {"cancel_at_period_end": True}, expect=400)
    assert r["error"]["code"] == "subscription_unexpected_state" and r["error"]["param"] == "cancel_at_period_end"
    assert Subscription.objects.get(pk=sub["id"]).cancel_at_period_end is False


def test_a_charge_under_way_when_the_flag_is_set_that_fails_ends_it_without_dunning(env, monkeypatch):
    """The tick made period 1's payment (recorded, sent to the PSP) and the merchant set the flag
    while it was under way; the PSP declined it. Nothing paid runs beyond period 0, whose end has
    passed: the subscription is canceled at that end, not put past due and dunned (a retry would
    charge the customer for a period the merchant said would not be served)."""
    from payments.services import subscriptions as svc

    cus, cit = saved_card(env)
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    _, mit = saved_card(env, "4000000000000341", cus=cus)  # off session: insufficient_funds
    env.post(f"/v1/subscriptions/{sub['id']}", {"payment_method": mit["payment_method"]["id"]})
    end = add_months(anchor(sub), 1)
    settle = svc.subscription_charge_settle

    def flag_then_settle(**kw):  # the PSP answered; before the tick settles, the merchant sets the flag
        env.post(f"/v1/subscriptions/{sub['id']}", {"cancel_at_period_end": True})
        return settle(**kw)

    with monkeypatch.context() as m:
        m.setattr(svc, "subscription_charge_settle", flag_then_settle)
        assert subscription_charge(subscription_id=sub["id"], now_=end) == "failed"
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.canceled_at, row.next_charge_at) == ("canceled", end, None)
    assert events(env, sub["id"])[-2:] == ["subscription.payment_failed", "subscription.canceled"]
    for day in (1, 3, 5, 7, 8):  # no dunning retry
        tick(end + dt.timedelta(days=day))
    assert Payment.objects.filter(metadata__subscription=sub["id"]).count() == 2  # period 0's, period 1's declined
    assert charges(sub["id"]) == [(0, 0, "succeeded"), (1, 0, "failed")]
    assert_ledger_sound()


def test_created_with_the_flag_its_first_period_is_charged_and_it_ends_at_that_periods_end(env):
    """`POST /v1/subscriptions` with `cancel_at_period_end: true` (it was accepted on update only;
    on create the field was ignored and the subscription renewed): the first period is charged at
    once as for any subscription, and it ends when that period ends — a one-period subscription."""
    cus, cit = saved_card(env)
    sub = subscribe(env, cus, cit["payment_method"]["id"], cancel_at_period_end=True)
    end = add_months(anchor(sub), 1)
    assert (sub["status"], sub["current_period"], sub["cancel_at_period_end"]) == ("active", 1, True)
    assert (sub["cancel_at"], sub["next_charge_at"]) == (int(end.timestamp()), None)
    assert charges(sub["id"]) == [(0, 0, "succeeded")]
    created = Event.objects.filter(type="subscription.created", data__object__id=sub["id"])
    assert [e.data["object"]["cancel_at_period_end"] for e in created] == [True]
    assert tick(end) == {"canceled": 1}
    done = env.http.get(f"/v1/subscriptions/{sub['id']}").json()
    assert (done["status"], done["canceled_at"]) == ("canceled", int(end.timestamp()))
    assert tick(add_months(anchor(sub), 2)) == {}
    assert charges(sub["id"]) == [(0, 0, "succeeded")]
    assert_ledger_sound()


def test_created_with_the_flag_a_declined_first_period_is_dunned_then_it_ends(env):
    """No period is paid yet, so there is none to run out: the first period's decline is dunned as
    for any subscription (not canceled before anything was served); once a retry pays it, the
    subscription ends at that period's end."""
    cus, cit = saved_card(env, "4000000000000341")  # off session: insufficient_funds
    sub = subscribe(env, cus, cit["payment_method"]["id"], cancel_at_period_end=True)
    t0 = anchor(sub)
    assert (sub["status"], sub["cancel_at_period_end"], sub["cancel_at"]) == ("past_due", True, None)
    assert sub["next_charge_at"] == int((t0 + dt.timedelta(days=1)).timestamp())
    _, good = saved_card(env, cus=cus)
    env.post(f"/v1/subscriptions/{sub['id']}", {"payment_method": good["payment_method"]["id"]})
    tick(t0 + dt.timedelta(days=1))
    got = env.http.get(f"/v1/subscriptions/{sub['id']}").json()
    end = add_months(t0, 1)
    assert (got["status"], got["current_period"], got["cancel_at"]) == ("active", 1, int(end.timestamp()))
    assert tick(end) == {"canceled": 1}
    assert charges(sub["id"]) == [(0, 0, "failed"), (0, 1, "succeeded")]
