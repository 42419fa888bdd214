"""A SEPA debit of a subscription's charge returned by the shopper's bank after it settled (an
R-transaction: beta's CHARGEBACK, recorded as a dispute `debit_returned`, lost, the money and the
fee taken back in the ledger) left the subscription `active` with that period counted as paid:
the merchant saw `dispute.created` on a payment but the subscription still said `active`, kept
delivering a period nobody paid for, and nothing ever collected it again.

Now the return reopens the period it paid (the lead's decision, docs/payments.md "Subscriptions"):
the subscription goes `past_due` on that period (`subscription.past_due`), retried on the
dunning schedule from the return (day 1, 3, 5, 7, the returned try counted as the period's
failed try); a paid retry makes it `active` again (`subscription.recovered`) and it carries on
with the first period not paid yet (a period paid meanwhile is not charged twice); spent retries
end `unpaid`. A canceled subscription is not reopened. Exactly once: the return applied twice at
once and a scheduler tick at the same moment (real threads on PostgreSQL) reopen it once.

The returns are beta's own (NL39RABO0300065264 settles, then the bank returns it: the sandbox's
SEPA return), delivered by its webhook or, held back, applied through the webhook worker's
service with the event beta's adapter parsed from beta's signed body."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from payments.models import Dispute, Subscription, SubscriptionCharge
from payments.recurring import add_months
from payments.services import dispute_apply_event, subscriptions_run
from psp_adapters.beta.webhooks import sign
from psp_adapters.registry import get_adapter
from tests.scenarios.conftest import assert_ledger_sound
from tests.scenarios.test_apm import RETURNED, create, deliver, events_of, sepa, wait_for
from tests.scenarios.test_subscriptions import anchor, events, saved_card, subscribe, tick

pytestmark = [pytest.mark.scenario]


def returning_sepa(env, email: str = "returned@example.com") -> tuple[str, str]:
    """A customer and its SEPA method on the IBAN whose every debit the sandbox's bank returns."""
    cus = env.post("/v1/customers", {"email": email}, expect=201)
    first = create(env, sepa(RETURNED), customer=cus["id"], setup_future_usage="off_session")
    env.wait(first["id"], lambda p: p["status"] == "succeeded")
    return cus["id"], first["payment_method"]["id"]


def charge_of(sub_id: str, period: int, try_number: int = 0) -> SubscriptionCharge:
    return SubscriptionCharge.objects.get(subscription_id=sub_id, period=period, try_number=try_number)


def monthly_with_its_first_period_paid(env) -> tuple[str, dict, dt.datetime, str]:
    """A monthly subscription on the returning SEPA method whose period 0 debit succeeded, its charge
    settled by the tick (the bank's return follows). `(customer id, subscription, anchor, the
    period's payment id)`."""
    cus, pm = returning_sepa(env)
    sub = subscribe(env, cus, pm)
    t0 = anchor(sub)
    paying = charge_of(sub["id"], 0).payment_id
    env.wait(paying, lambda p: p["status"] == "succeeded")
    subscriptions_run(now_=t0 + dt.timedelta(seconds=1))  # the tick settles the period's charge
    return cus, sub, t0, paying


def test_a_returned_debit_reopens_its_period_until_a_retry_pays_it(env):
    cus, sub, t0, paying = monthly_with_its_first_period_paid(env)
    before = timezone.now()
    wait_for(lambda: Dispute.objects.filter(payment_id=paying).exists())  # then the bank returns it
    after = timezone.now()
    assert Dispute.objects.get(payment_id=paying).reason == "debit_returned"

    row = Subscription.objects.get(pk=sub["id"])
    assert row.status == "past_due" and row.current_period == 0, (row.status, row.current_period)
    assert row.last_decline_code == "debit_returned" and row.last_error["code"] == "debit_returned"
    assert row.retries == 1  # the returned try is the period's first failed one: next is day 1
    assert before + dt.timedelta(days=1) <= row.next_charge_at <= after + dt.timedelta(days=1)
    assert charge_of(sub["id"], 0).status == "returned"
    assert events(env, sub["id"])[-1] == "subscription.past_due"

    _, card = saved_card(env, cus=cus)  # the customer gives a card: the retry charges it
    env.post(f"/v1/subscriptions/{sub['id']}", {"payment_method": card["payment_method"]["id"]})
    tick(row.next_charge_at)
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period, row.retries) == ("active", 1, 0)
    assert row.next_charge_at == add_months(t0, 1)  # the anchor holds
    assert charge_of(sub["id"], 0, 1).status == "succeeded"
    assert events(env, sub["id"])[-2:] == ["subscription.payment_succeeded", "subscription.recovered"]
    assert_ledger_sound()


def test_a_return_of_an_older_period_reopens_it_and_the_period_paid_since_is_not_charged_again(env, held):
    cus, _, sub, t0 = daily_with_its_first_period_paid(env, held)
    tick(t0 + dt.timedelta(days=1, seconds=1))  # period 1 is charged, and paid
    settle(env, held, sub["id"], 1, t0 + dt.timedelta(days=1, seconds=2))
    assert Subscription.objects.get(pk=sub["id"]).current_period == 2

    return_delivered(env, held, sub["id"])  # period 0's debit comes back now
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period) == ("past_due", 0)
    assert charge_of(sub["id"], 1).status == "succeeded"

    _, card = saved_card(env, cus=cus)
    env.post(f"/v1/subscriptions/{sub['id']}", {"payment_method": card["payment_method"]["id"]})
    tick(row.next_charge_at)
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period) == ("active", 2), (row.status, row.current_period)
    assert row.next_charge_at == t0 + dt.timedelta(days=2)  # period 1, paid, is not charged again
    assert SubscriptionCharge.objects.filter(subscription_id=sub["id"], period=1).count() == 1
    assert_ledger_sound()


@pytest.mark.skipif(connection.vendor == "sqlite", reason="concurrent writers: PostgreSQL row locks")
def test_the_return_applied_twice_racing_a_tick_reopens_the_period_once(env, held):
    _, _, sub, t0 = daily_with_its_first_period_paid(env, held)
    attempt = charge_of(sub["id"], 0).payment.attempts.get()
    wait_for(lambda: events_of(held, attempt.id, "dispute"))
    body = events_of(held, attempt.id, "dispute")[0]["body"].encode()
    event = get_adapter("beta").parse_webhook(body=body, headers={"Beta-Signature": sign(body, held.webhook_secret)})

    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def run(fn) -> None:
        try:
            barrier.wait()
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    apply = lambda: dispute_apply_event(connector="beta", event=event, actor="psp:beta")  # noqa: E731
    # the tick is due for period 1 (it starts at t0 + 1 day); the return, after t0, is retried a
    # day after itself, so later than this tick
    period_1 = t0 + dt.timedelta(days=1)
    threads = [threading.Thread(target=run, args=(fn,))
               for fn in (apply, apply, lambda: subscriptions_run(now_=period_1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors

    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period, row.retries) == ("past_due", 0, 1)
    assert Dispute.objects.filter(payment_id=attempt.payment_id).count() == 1
    assert events(env, sub["id"]).count("subscription.past_due") == 1
    assert charge_of(sub["id"], 0).status == "returned"
    assert not SubscriptionCharge.objects.filter(subscription_id=sub["id"], period=0, try_number=1).exists()
    assert_ledger_sound()


def test_a_canceled_subscription_is_not_reopened_by_a_return(env, held):
    # The bank's return is held at the sandbox until the cancel is in: sent by itself it could
    # arrive first under load (the subscription then rightly went past_due before the cancel).
    _, _, sub, _ = daily_with_its_first_period_paid(env, held)
    env.post(f"/v1/subscriptions/{sub['id']}/cancel", {})
    return_delivered(env, held, sub["id"])
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.next_charge_at) == ("canceled", None)
    assert "subscription.past_due" not in events(env, sub["id"])


# --- helpers with beta's webhooks held back ----------------------------------------------------
def returning_sepa_held(env, sb) -> tuple[str, str]:
    cus = env.post("/v1/customers", {"email": "held@example.com"}, expect=201)
    first = create(env, sepa(RETURNED), customer=cus["id"], setup_future_usage="off_session")
    att = first["attempts"][0]["id"]
    wait_for(lambda: events_of(sb, att, "authorization"))
    deliver(env, sb, events_of(sb, att, "authorization"))
    env.wait(first["id"], lambda p: p["status"] == "succeeded")
    return cus["id"], first["payment_method"]["id"]


def settle(env, sb, sub_id: str, period: int, at: dt.datetime) -> None:
    """Beta settles the period's debit (its authorization webhook delivered), the tick settles
    the charge; the bank's return stays held at the sandbox."""
    charge = charge_of(sub_id, period)
    att = charge.payment.attempts.get().id
    wait_for(lambda: events_of(sb, att, "authorization"))
    deliver(env, sb, events_of(sb, att, "authorization"))
    env.wait(charge.payment_id, lambda p: p["status"] == "succeeded")
    subscriptions_run(now_=at + dt.timedelta(seconds=1))
    assert charge_of(sub_id, period).status == "succeeded"


def daily_with_its_first_period_paid(env, sb) -> tuple[str, str, dict, dt.datetime]:
    """A daily subscription on the returning SEPA method (beta's webhooks held at `sb`), its period 0
    debit settled (the bank's return still held). `(customer id, payment method id, subscription,
    anchor)`."""
    cus, pm = returning_sepa_held(env, sb)
    sub = subscribe(env, cus, pm, interval="day")
    t0 = anchor(sub)
    settle(env, sb, sub["id"], 0, t0)
    return cus, pm, sub, t0


def return_delivered(env, sb, sub_id: str, period: int = 0) -> str:
    """The bank's return of the period's debit, held at `sb`, delivered; once Payera has the dispute.
    The debit's attempt id."""
    attempt = charge_of(sub_id, period).payment.attempts.get().id
    wait_for(lambda: events_of(sb, attempt, "dispute"))
    deliver(env, sb, events_of(sb, attempt, "dispute"))
    wait_for(lambda: Dispute.objects.filter(payment__attempts__id=attempt).exists())
    return attempt


def test_a_resume_after_a_returned_older_period_does_not_charge_the_paid_period_in_progress(env, held, settings):
    """An older period's debit was returned while the period in progress was already paid, and the
    returned period's retries were spent (`unpaid` on the returned period 0). The merchant then
    gave a card during period 1 to resume it: the resume charged "the period in progress" —
    period 1, already paid — a second time: the shopper's card was debited again for a paid period
    (a second payment for period 1 at the PSP) and the charge could not even be recorded (at most
    one succeeded charge per period), so the scheduler tripped on it. What a finance team would
    have seen: two captures for one period, one subscription charge row `pending` for ever.
    Now a resume never charges a period that is already paid: the subscription is active again and
    goes on with the first period not paid."""
    from payments.models import Payment
    from payments.services import subscription_update

    settings.SUBSCRIPTIONS_RETRY_DAYS = []  # the returned period has no retry left: unpaid at once
    cus, _, sub, t0 = daily_with_its_first_period_paid(env, held)
    tick(t0 + dt.timedelta(days=1, seconds=1))  # period 1 is charged, and paid
    settle(env, held, sub["id"], 1, t0 + dt.timedelta(days=1, seconds=2))

    return_delivered(env, held, sub["id"])  # period 0's debit comes back
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period) == ("unpaid", 0)

    _, card = saved_card(env, cus=cus)  # resumed during period 1, which is paid
    subscription_update(merchant=env.merchant, subscription_id=sub["id"],
                        payment_method=card["payment_method"]["id"], now_=t0 + dt.timedelta(days=1, hours=1))
    assert SubscriptionCharge.objects.filter(subscription_id=sub["id"], period=1).count() == 1
    assert Payment.objects.filter(metadata__subscription=sub["id"], metadata__subscription_period="1").count() == 1
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period) == ("active", 2)  # goes on with the first period not paid
    assert row.next_charge_at == t0 + dt.timedelta(days=2)
    assert not SubscriptionCharge.objects.filter(subscription_id=sub["id"], status="pending").exists()
    assert_ledger_sound()


def test_a_resume_while_the_period_in_progress_is_still_being_debited_makes_no_second_payment(env, held, settings):
    """An older period's debit was returned with its retries spent (`unpaid` on period 0) while
    period 1's SEPA debit was still processing. The merchant gave a card during period 1: the
    resume charged period 1 on the card at once, next to the debit still under way. Both went
    through: the shopper paid period 1 twice (a card capture and a SEPA debit), and the second to
    settle could not be recorded (at most one succeeded charge per period). Now a resume while the
    period in progress has a charge still being processed is refused (nothing changes, nothing
    charged): the merchant tries again once it settles."""
    from payments.models import Payment
    from payments.services import subscription_update
    from payments.services.subscriptions import SubscriptionStateError

    settings.SUBSCRIPTIONS_RETRY_DAYS = []
    cus, _, sub, t0 = daily_with_its_first_period_paid(env, held)
    tick(t0 + dt.timedelta(days=1, seconds=1))  # period 1's debit is made, still processing (held)
    assert charge_of(sub["id"], 1).status == "pending"

    return_delivered(env, held, sub["id"])
    assert Subscription.objects.get(pk=sub["id"]).status == "unpaid"

    _, card = saved_card(env, cus=cus)
    with pytest.raises(SubscriptionStateError):
        subscription_update(merchant=env.merchant, subscription_id=sub["id"],
                            payment_method=card["payment_method"]["id"], now_=t0 + dt.timedelta(days=1, hours=1))
    assert Payment.objects.filter(metadata__subscription=sub["id"], metadata__subscription_period="1").count() == 1
    assert Subscription.objects.get(pk=sub["id"]).status == "unpaid"
