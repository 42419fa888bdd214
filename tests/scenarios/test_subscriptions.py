"""Subscriptions end to end over the sandboxes, driven by the scheduler command on a simulated
clock (`manage.py run_subscriptions --now …`)."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading

import pytest
from django.core.management import call_command
from django.db import connection

from payera.events.models import Event
from payments.models import Payment, Subscription, SubscriptionCharge
from payments.recurring import add_months
from payments.services import subscriptions_run
from tests.scenarios.conftest import assert_ledger_sound, fee, pending_eur

pytestmark = [pytest.mark.scenario]


def tick(at: dt.datetime) -> dict:
    out = io.StringIO()
    call_command("run_subscriptions", "--now", at.isoformat(), stdout=out)
    return json.loads(out.getvalue())


def saved_card(env, number="4242424242424242", cus=None, **extra):
    cus = cus or env.post("/v1/customers", {"email": "sub@example.com"}, expect=201)["id"]
    p = env.pay(number, customer=cus, setup_future_usage="off_session", **extra)
    assert p["status"] in ("succeeded", "requires_action", "processing"), p
    return cus, p


def subscribe(env, cus, pm, amount=1500, interval="month", **extra):
    return env.post("/v1/subscriptions", {"customer": cus, "payment_method": pm, "amount": amount, "currency": "EUR",
                                          "interval": interval, "interval_count": 1, **extra}, expect=201)


def events(env, sub_id):
    return list(Event.objects.filter(merchant_id=env.merchant.id, data__object__id=sub_id).order_by("created_at", "id")
                .values_list("type", flat=True))


def anchor(sub) -> dt.datetime:
    return Subscription.objects.get(pk=sub["id"]).anchor


def test_cit_then_three_mits_over_a_simulated_clock(env):
    cus, cit = saved_card(env)
    cit_row = env.sandboxes["alpha"].payments(cit["attempts"][0]["id"])[0]
    sub = subscribe(env, cus, cit["payment_method"]["id"])  # MIT 1: period 0, charged at once
    assert sub["status"] == "active" and sub["current_period"] == 1
    t0 = anchor(sub)
    assert sub["next_charge_at"] == int(add_months(t0, 1).timestamp())
    assert tick(t0 + dt.timedelta(days=15)) == {}  # nothing due mid-period
    tick(add_months(t0, 1))  # MIT 2
    tick(add_months(t0, 1) + dt.timedelta(hours=1))  # the same period again: nothing
    tick(add_months(t0, 2))  # MIT 3
    sub = env.http.get(f"/v1/subscriptions/{sub['id']}").json()
    assert sub["status"] == "active" and sub["current_period"] == 3
    charges = SubscriptionCharge.objects.filter(subscription_id=sub["id"]).order_by("period")
    assert [(c.period, c.try_number, c.status) for c in charges] == [(0, 0, "succeeded"), (1, 0, "succeeded"),
                                                                     (2, 0, "succeeded")]
    assert sub["latest_payment"] == charges[2].payment_id
    for c in charges:
        p = env.get(c.payment_id)
        assert p["status"] == "succeeded" and p["amount_captured"] == 1500
        (row,) = env.sandboxes["alpha"].payments(p["attempts"][0]["id"])
        assert row["off_session"] == 1 and row["token"] == cit_row["token"]
        assert row["network_transaction_id"] == cit_row["network_transaction_id"]
        assert Payment.objects.get(pk=c.payment_id).idempotency_key == f"{sub['id']}:p{c.period}:t0"
    assert events(env, sub["id"]).count("subscription.payment_succeeded") == 3
    assert pending_eur(env) == 1000 - fee(1000) + 3 * (1500 - fee(1500))
    assert_ledger_sound()


def test_past_due_then_recovered_when_the_customer_gives_a_new_card(env):
    cus, cit = saved_card(env, "4000000000000341")  # approved with the shopper present
    assert cit["status"] == "succeeded"
    sub = subscribe(env, cus, cit["payment_method"]["id"])  # off session: insufficient_funds
    assert sub["status"] == "past_due" and sub["retries"] == 1
    assert sub["last_decline_code"] == "insufficient_funds"
    t0 = anchor(sub)
    assert sub["next_charge_at"] == int((t0 + dt.timedelta(days=1)).timestamp())
    tick(t0 + dt.timedelta(days=1))  # retry 1: declines again
    sub = env.http.get(f"/v1/subscriptions/{sub['id']}").json()
    assert sub["status"] == "past_due" and sub["retries"] == 2
    assert sub["next_charge_at"] == int((t0 + dt.timedelta(days=3)).timestamp())
    assert tick(t0 + dt.timedelta(days=2)) == {}  # not due between retries
    _, new = saved_card(env, "5555555555554444", cus=cus)
    upd = env.post(f"/v1/subscriptions/{sub['id']}", {"payment_method": new["payment_method"]["id"]})
    assert upd["payment_method"] == new["payment_method"]["id"] and upd["status"] == "past_due"
    tick(t0 + dt.timedelta(days=3))  # retry 2 on the new card: paid
    sub = env.http.get(f"/v1/subscriptions/{sub['id']}").json()
    assert sub["status"] == "active" and sub["retries"] == 0 and sub["current_period"] == 1
    assert sub["next_charge_at"] == int(add_months(t0, 1).timestamp())  # the anchor holds
    assert env.get(sub["latest_payment"])["status"] == "succeeded"
    assert events(env, sub["id"]) == [
        "subscription.created", "subscription.payment_failed", "subscription.past_due",
        "subscription.payment_failed", "subscription.updated", "subscription.payment_succeeded",
        "subscription.recovered",
    ]
    assert_ledger_sound()


def test_past_due_to_unpaid_when_the_retries_are_spent(env, settings):
    cus, cit = saved_card(env, "4000000000000341")
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    t0 = anchor(sub)
    for day in (1, 3, 5):
        tick(t0 + dt.timedelta(days=day))
        assert Subscription.objects.get(pk=sub["id"]).status == "past_due"
    tick(t0 + dt.timedelta(days=7))  # the last retry
    sub = env.http.get(f"/v1/subscriptions/{sub['id']}").json()
    assert sub["status"] == "unpaid" and sub["next_charge_at"] is None
    assert tick(add_months(t0, 1)) == {}  # unpaid: no more charges
    charges = SubscriptionCharge.objects.filter(subscription_id=sub["id"]).order_by("try_number")
    assert [(c.period, c.try_number, c.status, c.decline_code) for c in charges] == [
        (0, n, "failed", "insufficient_funds") for n in range(5)]
    assert len({c.payment_id for c in charges}) == 5
    for c in charges:
        p = env.get(c.payment_id)
        assert p["status"] == "failed" and len(p["attempts"]) == 1  # a hard decline: no cascade
    evs = events(env, sub["id"])
    assert evs.count("subscription.payment_failed") == 5 and evs.count("subscription.past_due") == 1
    assert evs[-1] == "subscription.unpaid"


def test_card_that_needs_authentication_stops_at_once(env):
    from tests.scenarios.test_card_table import _challenge

    cus, cit = saved_card(env, "4000000000003220", return_url="https://shop.example/done")
    _challenge(env, cit, "pass")
    cit = env.wait(cit["id"], lambda p: p["status"] == "succeeded")
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    assert sub["status"] == "unpaid" and sub["last_decline_code"] == "authentication_required"
    assert events(env, sub["id"]) == ["subscription.created", "subscription.payment_failed", "subscription.unpaid"]
    assert Event.objects.filter(type="payment.authentication_required", data__object__id=sub["latest_payment"]).exists()


def test_cancel_stops_the_charges(env):
    cus, cit = saved_card(env)
    sub = subscribe(env, cus, cit["payment_method"]["id"], interval="week")
    t0 = anchor(sub)
    done = env.post(f"/v1/subscriptions/{sub['id']}/cancel")
    assert done["status"] == "canceled" and done["canceled_at"] and done["next_charge_at"] is None
    assert env.post(f"/v1/subscriptions/{sub['id']}/cancel")["status"] == "canceled"  # twice: the same
    assert tick(t0 + dt.timedelta(weeks=1)) == {}
    assert SubscriptionCharge.objects.filter(subscription_id=sub["id"]).count() == 1
    assert events(env, sub["id"])[-1] == "subscription.canceled"


@pytest.mark.skipif(connection.vendor == "sqlite", reason="concurrent writers: PostgreSQL row locks")
def test_a_scheduler_tick_run_twice_concurrently_charges_once(env):
    cus, cit = saved_card(env)
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    due = add_months(anchor(sub), 1)
    barrier = threading.Barrier(4)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(subscriptions_run(now_=due))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert Payment.objects.filter(customer_id=cus).count() == 3  # the CIT, period 0, period 1: charged once
    charges = SubscriptionCharge.objects.filter(subscription_id=sub["id"], period=1)
    assert charges.count() == 1 and charges[0].status == "succeeded"
    assert Payment.objects.filter(idempotency_key=f"{sub['id']}:p1:t0").count() == 1
    att = Payment.objects.get(pk=charges[0].payment_id).attempts.get().id
    assert len(env.sandboxes["alpha"].payments(att)) == 1  # one authorization at the PSP
    assert Subscription.objects.get(pk=sub["id"]).current_period == 2
    assert pending_eur(env) == 1000 - fee(1000) + 2 * (1500 - fee(1500))
    assert_ledger_sound()


@pytest.mark.skipif(connection.vendor == "sqlite", reason="concurrent writers: PostgreSQL row locks")
def test_two_scheduler_processes_ticking_at_once_charge_once(env):
    import subprocess
    import sys
    import time

    from tests.psp_adapters.sandbox_fixtures import REPO_ROOT, connectors_for
    from tests.scenarios.crash.test_crash_points import _database_url

    cus, cit = saved_card(env)
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    due = add_months(anchor(sub), 1)
    cfg = json.dumps({
        "database_url": _database_url(), "connectors": connectors_for(env.sandboxes), "now": due.isoformat(),
        "credentials": {p: {"api_key": sb.api_key, "webhook_secret": sb.webhook_secret}
                        for p, sb in env.sandboxes.items()},
        "go_at": time.time() + 4.0,  # both processes have set Django up by then
    })
    procs = [subprocess.Popen([sys.executable, "-m", "tests.scenarios.scheduler_child", cfg], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert Payment.objects.filter(customer_id=cus).count() == 3  # the CIT, period 0, period 1: once
    charge = SubscriptionCharge.objects.get(subscription_id=sub["id"], period=1)
    assert charge.status == "succeeded"
    att = Payment.objects.get(pk=charge.payment_id).attempts.get().id
    assert len(env.sandboxes["alpha"].payments(att)) == 1
    assert Subscription.objects.get(pk=sub["id"]).current_period == 2
    assert pending_eur(env) == 1000 - fee(1000) + 2 * (1500 - fee(1500))
    assert_ledger_sound()


def test_an_asynchronous_psp_charge_is_settled_by_a_later_tick(env):
    env.merchant.connectors = ["beta"]  # beta answers "received"; the outcome comes by webhook
    env.merchant.save(update_fields=["connectors"])
    cus, cit = saved_card(env)
    env.wait(cit["id"], lambda p: p["status"] == "succeeded")
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    assert sub["status"] == "active" and sub["current_period"] == 0  # the charge is pending
    charge = SubscriptionCharge.objects.get(subscription_id=sub["id"])
    assert charge.status == "pending"
    t0 = anchor(sub)
    tick(t0)  # due, but its payment is still processing: the same payment, no second one
    assert Payment.objects.filter(customer_id=cus).count() == 2
    env.wait(charge.payment_id, lambda p: p["status"] == "succeeded")
    tick(t0)  # settles it
    sub = env.http.get(f"/v1/subscriptions/{sub['id']}").json()
    assert sub["status"] == "active" and sub["current_period"] == 1
    assert SubscriptionCharge.objects.get(pk=charge.pk).status == "succeeded"
    assert Payment.objects.filter(customer_id=cus).count() == 2
    (row,) = env.sandboxes["beta"].payments(env.get(charge.payment_id)["attempts"][0]["id"])
    assert row["off_session"] == 1 and row["token"]  # beta's own token


def test_a_tick_that_died_after_charging_is_settled_by_the_next_without_a_second_charge(env):
    from payments.services import payment_create
    from payments.services.subscriptions import _charge_claim, charge_key

    cus, cit = saved_card(env)
    sub = subscribe(env, cus, cit["payment_method"]["id"])
    due = add_months(anchor(sub), 1)
    # the dead tick: it claimed period 1 and made its payment, then died before settling
    charge_id = _charge_claim(subscription_id=sub["id"], at=due)
    payment_create(merchant=env.merchant, amount=1500, currency="EUR", customer=cus,
                   payment_method=cit["payment_method"]["id"], off_session=True,
                   idempotency_key=charge_key(sub["id"], 1, 0))
    assert SubscriptionCharge.objects.get(pk=charge_id).payment_id is None
    # the method cannot be detached meanwhile: the live subscription charges it
    assert env.post(f"/v1/payment_methods/{cit['payment_method']['id']}/detach", expect=400)["error"]["code"] == \
        "payment_method_in_use"
    tick(due)
    charge = SubscriptionCharge.objects.get(pk=charge_id)
    assert charge.status == "succeeded" and charge.payment_id
    assert Payment.objects.filter(customer_id=cus).count() == 3  # the CIT, period 0, period 1: once
    assert Subscription.objects.get(pk=sub["id"]).current_period == 2


def test_create_with_an_idempotency_key_twice_makes_one_subscription_and_one_charge(env):
    cus, cit = saved_card(env)
    body = {"customer": cus, "payment_method": cit["payment_method"]["id"], "amount": 1500, "currency": "EUR",
            "interval": "month"}
    first = env.http.post("/v1/subscriptions", json=body, headers={"Idempotency-Key": "sub-create-1"})
    again = env.http.post("/v1/subscriptions", json=body, headers={"Idempotency-Key": "sub-create-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json()["id"] == first.json()["id"]
    assert Subscription.objects.filter(customer_id=cus).count() == 1
    assert Payment.objects.filter(customer_id=cus).count() == 2  # the CIT and period 0
