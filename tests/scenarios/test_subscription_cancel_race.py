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
