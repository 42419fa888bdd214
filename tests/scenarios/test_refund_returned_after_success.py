"""A refund the PSP reported succeeded and later reports failed (the shopper's bank sent it back:
Adyen's REFUND_FAILED after REFUND, a Stripe refund going `succeeded` -> `failed`).

The PSP gives the money back to the merchant: Payera must too. Before, every later news of a
refund no longer pending was "stale" and ignored, so the refund stayed `succeeded`, the merchant's
balance stayed debited for money the shopper never got (and the PSP paid back), the merchant was
never told, and `amount_refunded` blocked refunding the payment again.
"""

from __future__ import annotations

import time

import pytest

from ledger.models import Journal
from payera.events.models import Event
from payments.models import Payment, Refund
from payments.services import psp_webhook_process_due
from payments.services.recovery import attempt_settlement_inquire
from tests.scenarios.conftest import assert_ledger_sound, pending_eur

pytestmark = [pytest.mark.scenario]


def _wait_refund(env, refund_id: str, status: str) -> dict:
    for _ in range(100):
        psp_webhook_process_due()
        r = env.http.get(f"/v1/refunds/{refund_id}").json()
        if r["status"] == status:
            return r
        time.sleep(0.1)
    raise AssertionError(f"refund never {status}: {r}")


def test_a_refund_the_psp_fails_after_reporting_it_succeeded_gives_the_money_back(env):
    p = env.pay(amount=1000)  # alpha: captured at once
    r1 = env.post("/v1/refunds", {"payment": p["id"], "amount": 300}, expect=201)
    r2 = env.post("/v1/refunds", {"payment": p["id"], "amount": 400}, expect=201)
    assert (r1["status"], r2["status"]) == ("succeeded", "succeeded")
    before_return = pending_eur(env)
    returned = Refund.objects.get(pk=r2["id"])
    fee_back = sum(
        e.amount
        for j in Journal.objects.filter(reference=f"refund_fee:{returned.id}")
        for e in j.entries.all()
        if e.amount > 0
    )
    assert fee_back > 0

    answer = env.sandboxes["alpha"].return_refund(returned.psp_reference)
    assert answer.status_code == 200, answer.text
    r = _wait_refund(env, r2["id"], "failed")
    assert r["failure_code"]

    payment = env.get(p["id"])
    assert payment["amount_refunded"] == 300
    # the refund and the fee share it returned are reversed: the merchant holds the 400 again
    assert pending_eur(env) == before_return + 400 - fee_back
    assert (
        Journal.objects.filter(
            reference__in=[f"refund_reversal:{returned.id}", f"refund_fee_reversal:{returned.id}"]
        ).count()
        == 2
    )
    shown = {t["reference"] for t in env.http.get("/v1/balance_transactions", params={"limit": 100}).json()["data"]}
    assert {f"refund_reversal:{returned.id}", f"refund_fee_reversal:{returned.id}"} <= shown
    failed = Event.objects.filter(merchant_id=env.merchant.id, type="refund.failed")
    assert [e.data["object"]["id"] for e in failed] == [returned.id]
    assert_ledger_sound()

    # the same news again (a repeat, an inquiry) changes nothing
    assert attempt_settlement_inquire(attempt_id=returned.attempt_id)
    assert Event.objects.filter(merchant_id=env.merchant.id, type="refund.failed").count() == 1
    assert Payment.objects.get(pk=p["id"]).amount_refunded == 300

    # what the PSP gave back can be refunded again, and everything refunded ends at zero
    again = env.post("/v1/refunds", {"payment": p["id"]}, expect=201)
    assert (again["amount"], again["status"]) == (700, "succeeded")
    assert pending_eur(env) == 0
    assert env.get(p["id"])["amount_refunded"] == 1000
    assert_ledger_sound()


@pytest.mark.django_db
def test_a_beta_refund_sent_back_is_reversed_when_the_psp_is_asked(psp_settings, settings):
    """Beta (asynchronous): the refund sent back is learned from the inquiry (reconciliation's
    settlement inquiry, recovery), not only from the webhook."""
    from payments.services import payment_create, recovery_run, refund_create
    from tests.merchants.factories import MerchantFactory

    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["beta"])
    card = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    payment = payment_create(merchant=merchant, amount=2000, currency="EUR", payment_method_data=card)
    for _ in range(50):
        recovery_run(force=True)
        if Payment.objects.get(pk=payment.id).status == "succeeded":
            break
        time.sleep(0.1)
    refund = refund_create(merchant=merchant, payment_id=payment.id, amount=500)
    for _ in range(50):
        recovery_run(force=True)
        refund = Refund.objects.get(pk=refund.id)
        if refund.status == "succeeded":
            break
        time.sleep(0.1)
    assert refund.status == "succeeded" and refund.psp_reference
    assert Payment.objects.get(pk=payment.id).amount_refunded == 500

    assert psp_settings["beta"].return_refund(refund.psp_reference).status_code == 200
    assert attempt_settlement_inquire(attempt_id=refund.attempt_id)
    refund = Refund.objects.get(pk=refund.id)
    assert refund.status == "failed" and refund.failure_code
    assert Payment.objects.get(pk=payment.id).amount_refunded == 0
    assert Journal.objects.filter(reference=f"refund_reversal:{refund.id}").exists()
    assert Event.objects.filter(merchant_id=merchant.id, type="refund.failed").count() == 1
    assert_ledger_sound()
