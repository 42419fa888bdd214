"""SEPA mandates ended by the merchant or by the bank (beta sandbox over real HTTP, PostgreSQL).
From review 16e.

What was wrong:
- A merchant had no way to revoke a mandate: `POST /v1/payment_methods/{id}/detach` of a saved
  SEPA method shredded its IBAN but left its mandate `active`, the evidence saying the debtor's
  authorization still stood.
- A return or reject whose reason code ends the mandate (MD01, AC04, AC06, MD07) made it
  `inactive` silently: no event told the merchant, who learned of it only when the next debit (a
  subscription's period, weeks later) was refused.
- A subscription whose next charge was refused that way went `unpaid` with only
  `last_decline_code` (`mandate_inactive`, `payment_method_detached`), never saying why.

What holds now: detaching a SEPA method revokes its mandate (`inactive`, reason `revoked by the
merchant (payment method detached)`); any mandate ending emits `payment_method.mandate_inactive`
(the payment method object, `sepa_debit.mandate_status: "inactive"` and its reason) once, in the
transaction that ends it; no debit is sent under it afterwards, and a subscription charging it goes
`unpaid` at its next charge with `last_error` saying why."""

from __future__ import annotations

import pytest

from payera.events.models import Event
from payments.models import Payment, SepaMandate, Subscription
from payments.recurring import add_months
from payments.services import dispute_apply_event, subscriptions_run
from tests.scenarios.test_sepa_mandate_checks import saved_sepa
from tests.scenarios.test_sepa_mandate_returns import returned

pytestmark = [pytest.mark.scenario]


def subscribed(env, email: str) -> tuple[str, str, dict]:
    cus, pm = saved_sepa(env, email)
    sub = env.post(
        "/v1/subscriptions",
        {"customer": cus, "payment_method": pm, "amount": 700, "currency": "EUR", "interval": "month"},
        expect=201,
    )
    first = Payment.objects.get(merchant=env.merchant, off_session=True, payment_method_id=pm)
    env.wait(first.id, lambda p: p["status"] == "succeeded")
    subscriptions_run()  # settles the first period
    assert Subscription.objects.get(pk=sub["id"]).current_period == 1
    return cus, pm, sub


def mandate_events(env, pm: str) -> list[dict]:
    return [
        e.data["object"]
        for e in Event.objects.filter(
            merchant_id=env.merchant.id, type="payment_method.mandate_inactive", data__object__id=pm
        )
    ]


def next_period(sub: dict) -> None:
    subscriptions_run(now_=add_months(Subscription.objects.get(pk=sub["id"]).anchor, 1))


def debits(env, pm: str) -> int:
    return Payment.objects.filter(merchant=env.merchant, payment_method_id=pm, off_session=True).count()


def test_detaching_a_saved_sepa_method_revokes_its_mandate_and_says_so(env):
    cus, pm, sub = subscribed(env, "detach-revokes@example.com")
    in_use = env.post(f"/v1/payment_methods/{pm}/detach", expect=400)  # the subscription debits it
    assert in_use["error"]["code"] == "payment_method_in_use"
    assert SepaMandate.objects.get(payment_method_id=pm).status == "active"
    env.post(f"/v1/subscriptions/{sub['id']}/cancel")
    shown = env.post(f"/v1/payment_methods/{pm}/detach")
    row = SepaMandate.objects.get(payment_method_id=pm)
    assert row.status == "inactive" and row.inactive_at is not None
    assert row.inactive_reason == "revoked by the merchant (payment method detached)"
    assert shown["sepa_debit"]["mandate_status"] == "inactive" and shown["reusable"] is False
    (event,) = mandate_events(env, pm)
    assert event["sepa_debit"]["mandate"] == row.reference and event["sepa_debit"]["mandate_status"] == "inactive"
    assert event["sepa_debit"]["mandate_inactive_reason"] == row.inactive_reason
    env.post(f"/v1/payment_methods/{pm}/detach")  # again: nothing more
    assert len(mandate_events(env, pm)) == 1

    next_period(sub)
    assert debits(env, pm) == 1  # no debit after the revocation
    later = env.http.post("/v1/payments", json={"amount": 900, "currency": "EUR", "customer": cus,
                                                "payment_method": pm, "off_session": True})
    assert later.status_code == 400 and later.json()["error"]["code"] == "payment_method_detached"


def test_a_return_that_ends_the_mandate_is_an_event_and_stops_the_subscription(env):
    cus, pm, sub = subscribed(env, "return-ends@example.com")
    paid = Payment.objects.get(merchant=env.merchant, off_session=True, payment_method_id=pm)
    dispute_apply_event(connector="beta", event=returned(paid.id, "MD01"), actor="psp:beta")
    row = SepaMandate.objects.get(payment_method_id=pm)
    (event,) = mandate_events(env, pm)
    assert event["sepa_debit"]["mandate_status"] == "inactive"
    assert event["sepa_debit"]["mandate_inactive_reason"] == row.inactive_reason
    assert row.inactive_reason.endswith(": MD01")
    dispute_apply_event(connector="beta", event=returned(paid.id, "MD01"), actor="psp:beta")  # again
    assert len(mandate_events(env, pm)) == 1

    # the return itself stops it (the period it paid reopened, no retry could pass): unpaid at once
    got = env.http.get(f"/v1/subscriptions/{sub['id']}").json()
    assert got["status"] == "unpaid" and got["next_charge_at"] is None and got["current_period"] == 0
    assert got["last_error"]["code"] == "debit_returned" and got["last_error"]["decline_code"] == "MD01"
    assert pm in got["last_error"]["message"]
    next_period(sub)
    assert debits(env, pm) == 1  # never debited again


def test_a_return_that_keeps_the_mandate_is_no_mandate_event(env):
    cus, pm, sub = subscribed(env, "return-keeps@example.com")
    paid = Payment.objects.get(merchant=env.merchant, off_session=True, payment_method_id=pm)
    dispute_apply_event(connector="beta", event=returned(paid.id, "MD06"), actor="psp:beta")
    assert SepaMandate.objects.get(payment_method_id=pm).status == "active"
    assert mandate_events(env, pm) == []
    assert env.http.get(f"/v1/payment_methods/{pm}").json()["sepa_debit"]["mandate_status"] == "active"
