"""An `unpaid` subscription given a new payment method is charged again (the product gap
"an unpaid subscription cannot be resumed with a new card").

Until session 18, `POST /v1/subscriptions/{id}` with a new `payment_method` on an `unpaid`
subscription answered 200 and `subscription.updated`, and nothing else ever happened: `unpaid`
has no next charge, so the merchant who got a working card from the customer (as docs/api.md
told them: "update its payment_method") kept a dead subscription, and the only way out was a new
subscription with a new anchor. Now the update resumes it: the period in progress is charged at
once with the new method, through the scheduler's own claimed, idempotent path (key
`<sub>:p<period>:t<try>`); paid → `active` (`subscription.recovered`), refused → `unpaid` again
(one try, no new dunning: the merchant asks the customer again). Periods that passed while it was
unpaid are not charged."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection

from payments.models import Payment, Subscription, SubscriptionCharge
from payments.recurring import add_months
from payments.services import subscription_update, subscriptions_run
from tests.scenarios.conftest import assert_ledger_sound
from tests.scenarios.test_subscriptions import anchor, events, saved_card, subscribe, tick

pytestmark = [pytest.mark.scenario]


def unpaid_subscription(env):
    """A subscription `unpaid` at its first charge: a card that asks for 3-D Secure off session
    (a hard decline, no dunning)."""
    from tests.scenarios.test_card_table import _challenge

    cus, cit = saved_card(env, "4000000000003220", return_url="https://shop.example/done")
    _challenge(env, cit, "pass")
    env.wait(cit["id"], lambda p: p["status"] == "succeeded")
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    assert sub["status"] == "unpaid" and sub["next_charge_at"] is None
    return cus, sub


def test_an_unpaid_subscription_given_a_new_card_is_charged_at_once_and_active_again(env):
    cus, sub = unpaid_subscription(env)
    t0 = anchor(sub)
    _, new = saved_card(env, "5555555555554444", cus=cus)
    upd = env.post(f"/v1/subscriptions/{sub['id']}", {"payment_method": new["payment_method"]["id"]})
    assert upd["status"] == "active", upd
    assert upd["payment_method"] == new["payment_method"]["id"]
    assert upd["current_period"] == 1 and upd["retries"] == 0
    assert upd["last_error"] is None and upd["last_decline_code"] is None
    assert upd["next_charge_at"] == int(add_months(t0, 1).timestamp())  # the anchor holds
    paid = env.get(upd["latest_payment"])
    assert paid["status"] == "succeeded" and paid["amount_captured"] == 1500
    assert paid["payment_method"]["id"] == new["payment_method"]["id"]
    charges = SubscriptionCharge.objects.filter(subscription_id=sub["id"]).order_by("period", "try_number")
    assert [(c.period, c.try_number, c.status) for c in charges] == [(0, 0, "failed"), (0, 1, "succeeded")]
    assert events(env, sub["id"]) == [
        "subscription.created",
        "subscription.payment_failed",
        "subscription.unpaid",
        "subscription.updated",
        "subscription.payment_succeeded",
        "subscription.recovered",
    ]
    tick(add_months(t0, 1))  # then on schedule, as any active subscription
    assert Subscription.objects.get(pk=sub["id"]).current_period == 2
    assert_ledger_sound()


def test_a_resumed_charge_that_fails_is_unpaid_again_without_dunning(env):
    cus, sub = unpaid_subscription(env)
    t0 = anchor(sub)
    _, other = saved_card(env, "4000000000000341", cus=cus)  # approved present, insufficient_funds off session
    upd = env.post(f"/v1/subscriptions/{sub['id']}", {"payment_method": other["payment_method"]["id"]})
    assert upd["status"] == "unpaid" and upd["next_charge_at"] is None
    assert upd["last_decline_code"] == "insufficient_funds"
    assert upd["last_error"]["decline_code"] == "insufficient_funds"
    assert env.get(upd["latest_payment"])["status"] == "failed"
    assert tick(t0 + dt.timedelta(days=1)) == {}  # unpaid: the scheduler leaves it alone
    assert events(env, sub["id"])[-3:] == ["subscription.updated", "subscription.payment_failed", "subscription.unpaid"]
    # another card later: resumed again, a new try of the same period
    _, good = saved_card(env, "4242424242424242", cus=cus)
    upd = env.post(f"/v1/subscriptions/{sub['id']}", {"payment_method": good["payment_method"]["id"]})
    assert upd["status"] == "active" and upd["current_period"] == 1
    charges = SubscriptionCharge.objects.filter(subscription_id=sub["id"]).order_by("period", "try_number")
    assert [(c.period, c.try_number, c.status) for c in charges] == [
        (0, 0, "failed"),
        (0, 1, "failed"),
        (0, 2, "succeeded"),
    ]


def test_a_subscription_resumed_months_later_is_charged_for_the_period_in_progress_only(env):
    cus, sub = unpaid_subscription(env)
    t0 = anchor(sub)
    _, new = saved_card(env, "4242424242424242", cus=cus)
    later = add_months(t0, 2) + dt.timedelta(days=3)  # periods 1 and 2 began while it was unpaid
    done = subscription_update(
        merchant=env.merchant, subscription_id=sub["id"], payment_method=new["payment_method"]["id"], now_=later
    )
    assert done.status == "active" and done.current_period == 3
    assert done.next_charge_at == add_months(t0, 3)
    charges = SubscriptionCharge.objects.filter(subscription_id=sub["id"]).order_by("period", "try_number")
    assert [(c.period, c.try_number, c.status) for c in charges] == [(0, 0, "failed"), (2, 0, "succeeded")]
    assert tick(later + dt.timedelta(minutes=1)) == {}  # no catch-up of periods 0 and 1
    assert env.get(charges[1].payment_id)["metadata"]["subscription_period"] == "2"


def test_metadata_alone_does_not_resume_an_unpaid_subscription(env):
    _, sub = unpaid_subscription(env)
    upd = env.post(f"/v1/subscriptions/{sub['id']}", {"metadata": {"plan": "gold"}})
    assert upd["status"] == "unpaid" and upd["next_charge_at"] is None
    assert SubscriptionCharge.objects.filter(subscription_id=sub["id"]).count() == 1


def test_a_sepa_subscription_resumed_with_a_new_mandate_is_past_due_until_the_debit_settles(env):
    from tests.scenarios.test_apm import create, sepa
    from tests.scenarios.test_sepa_mandate_revocation import next_period, subscribed

    cus, old_pm, sub = subscribed(env, "resume-sepa@example.com")
    revoke(old_pm)  # the debtor revoked the mandate at the bank
    next_period(sub)
    assert Subscription.objects.get(pk=sub["id"]).status == "unpaid"
    first = create(env, sepa(), customer=cus, setup_future_usage="off_session")  # a new mandate
    first = env.wait(first["id"], lambda p: p["status"] == "succeeded")
    at = add_months(anchor(sub), 1) + dt.timedelta(days=1)
    done = subscription_update(
        merchant=env.merchant, subscription_id=sub["id"], payment_method=first["payment_method"]["id"], now_=at
    )
    assert done.status == "past_due" and done.current_period == 1  # the debit is under way
    charge = SubscriptionCharge.objects.get(subscription_id=sub["id"], period=1, status="pending")
    env.wait(charge.payment_id, lambda p: p["status"] == "succeeded")
    tick(at + dt.timedelta(minutes=1))  # settles it
    done = Subscription.objects.get(pk=sub["id"])
    assert done.status == "active" and done.current_period == 2 and done.resumed_at is None
    assert events(env, sub["id"])[-3:] == [
        "subscription.updated",
        "subscription.payment_succeeded",
        "subscription.recovered",
    ]


@pytest.mark.skipif(connection.vendor == "sqlite", reason="concurrent writers: PostgreSQL row locks")
def test_a_resume_and_scheduler_ticks_at_once_charge_the_period_once(env):
    """The resume's own charge and ticks that find the resumed subscription due at the same moment
    claim the same charge row (period, try) and the payment's deterministic key: one payment, one
    authorization at the PSP."""
    cus, sub = unpaid_subscription(env)
    _, new = saved_card(env, "4242424242424242", cus=cus)
    at = anchor(sub) + dt.timedelta(hours=1)
    barrier = threading.Barrier(4)
    errors: list[Exception] = []

    def run(resume: bool):
        try:
            barrier.wait()
            if resume:
                subscription_update(
                    merchant=env.merchant,
                    subscription_id=sub["id"],
                    payment_method=new["payment_method"]["id"],
                    now_=at,
                )
            else:
                for _ in range(20):  # keep ticking while the resume commits
                    subscriptions_run(now_=at)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n == 0,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    charges = SubscriptionCharge.objects.filter(subscription_id=sub["id"]).order_by("period", "try_number")
    assert [(c.period, c.try_number, c.status) for c in charges] == [(0, 0, "failed"), (0, 1, "succeeded")]
    assert Payment.objects.filter(idempotency_key=f"{sub['id']}:p0:t1").count() == 1
    att = Payment.objects.get(pk=charges[1].payment_id).attempts.get().id
    assert len(env.sandboxes["alpha"].payments(att)) == 1  # one authorization at the PSP
    done = Subscription.objects.get(pk=sub["id"])
    assert done.status == "active" and done.current_period == 1
    assert events(env, sub["id"]).count("subscription.recovered") == 1
    assert_ledger_sound()


def revoke(pm_id: str) -> None:
    """The debtor's bank says the mandate was revoked (the mandate ends; the method stays attached:
    a live subscription's method cannot be detached)."""
    from django.db import transaction

    from payments.models import PaymentMethod
    from payments.services.methods import mandate_end

    with transaction.atomic():
        assert mandate_end(pm=PaymentMethod.objects.get(pk=pm_id), reason="revoked by the debtor")
