"""A cancel that commits between a tick's claim of a period and its payment. The claim commits
(it must: no PSP call inside a transaction), then the payment is created outside it; a
`POST /v1/subscriptions/{id}/cancel` landing in between found nothing under way, answered
`canceled` ("at once, no further charge", `subscription.canceled` sent), and the tick went on to
charge the customer for the period after all. The payment's insert transaction now takes the
subscription's row lock and refuses a subscription no longer active or past due: either the cancel
commits first and nothing is created or sent, or the payment is recorded first and the cancel
finds it under way (it then settles, as documented)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from payments.models import Payment, Subscription, SubscriptionCharge
from payments.recurring import add_months
from payments.services import subscription_cancel, subscription_charge
from payments.services import subscriptions as subs
from tests.scenarios.test_subscriptions import anchor, saved_card, subscribe

pytestmark = [pytest.mark.scenario]


@pytest.mark.skipif(connection.vendor == "sqlite", reason="a second connection cancels: PostgreSQL row locks")
def test_a_cancel_landing_after_the_claim_means_no_charge(env, monkeypatch):
    cus, cit = saved_card(env)
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    due = add_months(anchor(sub), 1)
    claim = subs._charge_claim

    def claim_then_cancel(**kwargs):
        charge_id = claim(**kwargs)

        def cancel():  # the merchant's cancel, on its own connection, right after the claim committed
            try:
                subscription_cancel(merchant=env.merchant, subscription_id=sub["id"], actor="test")
            finally:
                connection.close()

        t = threading.Thread(target=cancel)
        t.start()
        t.join()
        return charge_id

    monkeypatch.setattr(subs, "_charge_claim", claim_then_cancel)
    assert subscription_charge(subscription_id=sub["id"], now_=due) == "failed"
    assert Subscription.objects.get(pk=sub["id"]).status == "canceled"
    assert not Payment.objects.filter(idempotency_key=f"{sub['id']}:p1:t0").exists()  # nothing charged
    assert Payment.objects.filter(customer_id=cus).count() == 2  # the CIT and period 0
    charge = SubscriptionCharge.objects.get(subscription_id=sub["id"], period=1)
    assert (charge.status, charge.decline_code, charge.payment_id) == ("failed", "subscription_canceled", None)


def test_a_charge_under_way_at_the_cancel_that_succeeds_later_is_told(env):
    """The other order: the cancel lands once the period's payment is recorded (beta: processing),
    so that payment stands — and when it succeeded, the canceled subscription's charge settled
    without any `subscription.*` event: the merchant, told `subscription.canceled`, never learnt
    from the subscription that its customer was charged after all (to refund if they wish). It now
    sends `subscription.payment_succeeded` (the subscription stays canceled, its period unmoved)."""
    from payera.events.models import Event

    env.merchant.connectors = ["beta"]
    env.merchant.save(update_fields=["connectors"])
    cus, cit = saved_card(env)
    env.wait(cit["id"], lambda p: p["status"] == "succeeded")
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    charge = SubscriptionCharge.objects.get(subscription_id=sub["id"])
    assert charge.status == "pending" and env.get(charge.payment_id)["status"] == "processing"
    assert env.post(f"/v1/subscriptions/{sub['id']}/cancel")["status"] == "canceled"
    env.wait(charge.payment_id, lambda p: p["status"] == "succeeded")
    from payments.services import subscriptions_run

    assert subscriptions_run()["settled_succeeded"] == 1
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period) == ("canceled", 0)
    assert SubscriptionCharge.objects.get(pk=charge.pk).status == "succeeded"
    types = list(
        Event.objects.filter(merchant_id=env.merchant.id, data__object__id=sub["id"])
        .order_by("created_at", "id")
        .values_list("type", flat=True)
    )
    assert types[-2:] == ["subscription.canceled", "subscription.payment_succeeded"], types


@pytest.mark.skipif(connection.vendor == "sqlite", reason="a second connection updates: PostgreSQL row locks")
def test_a_new_card_given_after_the_claim_is_the_one_charged(env, monkeypatch):
    """Review r16a: the tick reads the subscription (its payment method) after its claim commits,
    then creates the payment; a `POST /v1/subscriptions/{id}` with a new card landing in between
    answered the new method, yet the period was charged to the old one (still attached, so the PSP took it). The
    payment's insert transaction now refuses a method that is no longer the subscription's: nothing
    is inserted or sent, the charge stays pending, and the next tick charges the new card."""
    from payments.services import subscription_update

    cus, cit = saved_card(env)
    _, second = saved_card(env, "5555555555554444", cus=cus)
    old_pm, new_pm = cit["payment_method"]["id"], second["payment_method"]["id"]
    sub = subscribe(env, cus, old_pm)
    due = add_months(anchor(sub), 1)
    create = subs.payment_create

    def update_then_create(**kwargs):
        def update():  # the merchant's update, on its own connection, after the tick read the subscription
            try:
                subscription_update(merchant=env.merchant, subscription_id=sub["id"], payment_method=new_pm)
            finally:
                connection.close()

        t = threading.Thread(target=update)
        t.start()
        t.join()
        return create(**kwargs)

    monkeypatch.setattr(subs, "payment_create", update_then_create)
    assert subscription_charge(subscription_id=sub["id"], now_=due) == "pending"
    assert not Payment.objects.filter(idempotency_key=f"{sub['id']}:p1:t0").exists()  # nothing charged yet
    monkeypatch.setattr(subs, "payment_create", create)
    assert subscription_charge(subscription_id=sub["id"], now_=due) == "succeeded"  # the next tick
    payment = Payment.objects.get(idempotency_key=f"{sub['id']}:p1:t0")
    assert payment.payment_method_id == new_pm and payment.status == "succeeded"
    assert Payment.objects.filter(customer_id=cus, payment_method_id=old_pm).count() == 2  # its CIT, period 0
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period) == ("active", 2)
