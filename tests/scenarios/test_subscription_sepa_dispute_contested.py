"""A SEPA dispute the merchant can still win does not reopen the period it disputes.

Before: every dispute on a SEPA debit reopened the subscription's period the debit paid the moment
it opened (`_dispute_open` → `subscription_charge_returned`), even a dispute the PSP opened
`needs_response` — a SEPA unauthorised-transaction claim (`MD01`), which the merchant answers with
the mandate. The period was collected again (dunning, or the resume with a new method) while the
claim was open; the merchant then won it and the original debit came back too: that period was
paid twice.

Now only a final return reopens a period (docs/decisions/sepa-return-vs-contestable-dispute.md):
a dispute on a debit that the PSP opens already `lost` (an R-transaction: the sandbox's return)
reopens it at once, as before; a dispute the PSP opens `needs_response` reopens it only when it is
lost; won, the period stays paid and nothing is charged again.

Real sandbox HTTP throughout: the debits are beta's, the claim is opened at beta
(`POST /_sandbox/payments/<id>/disputes`, reason `debit_unauthorized`: `MD01`, `needs_response`),
its webhook confirmed by beta's dispute inquiry, the evidence sent to beta's defense endpoint, and
the network's decision is beta's `POST /_sandbox/disputes/<id>/close` with its webhook."""

from __future__ import annotations

import datetime as dt

import pytest

from payments.models import Dispute, Payment, Subscription, SubscriptionCharge
from payments.services import subscriptions_run
from tests.scenarios.conftest import assert_ledger_sound, pending_eur
from tests.scenarios.test_apm import GOOD, create, sepa, wait_for
from tests.scenarios.test_disputes import _closed_by_the_network
from tests.scenarios.test_subscription_debit_returned import charge_of
from tests.scenarios.test_subscriptions import anchor, events, saved_card, subscribe, tick

pytestmark = [pytest.mark.scenario]


def _paid_sepa_subscription(env) -> tuple[str, dict, dt.datetime, Payment]:
    """A customer with a SEPA mandate on an account whose debits settle, subscribed monthly: period
    0's debit settled and its charge settled by the tick."""
    cus = env.post("/v1/customers", {"email": "claim@example.com"}, expect=201)["id"]
    first = create(env, sepa(GOOD), customer=cus, setup_future_usage="off_session")
    env.wait(first["id"], lambda p: p["status"] == "succeeded")
    sub = subscribe(env, cus, first["payment_method"]["id"])
    t0 = anchor(sub)
    paying = charge_of(sub["id"], 0).payment
    env.wait(paying.id, lambda p: p["status"] == "succeeded")
    subscriptions_run(now_=t0 + dt.timedelta(seconds=1))
    assert charge_of(sub["id"], 0).status == "succeeded"
    return cus, sub, t0, paying


def _disputed_at_beta(env, payment: Payment, reason: str) -> Dispute:
    """The shopper's bank disputes the debit at beta; Payera applies beta's webhook."""
    attempt = payment.attempts.get()
    env.sandboxes["beta"].open_dispute(attempt.psp_reference, reason)
    wait_for(lambda: Dispute.objects.filter(payment_id=payment.id).exists())
    return Dispute.objects.get(payment_id=payment.id)


def _period_payments(sub_id: str, period: int) -> list[Payment]:
    return list(
        Payment.objects.filter(
            metadata__subscription=sub_id, metadata__subscription_period=str(period), status="succeeded"
        )
    )


def _claim_is_open_and_the_period_still_paid(env, sub: dict, t0: dt.datetime, d: Dispute) -> None:
    assert (d.status, d.reason, d.psp_reason) == ("needs_response", "debit_returned", "MD01")
    assert d.evidence_due_by is not None  # the merchant may answer it
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period, row.last_decline_code) == ("active", 1, ""), (
        row.status,
        row.current_period,
        row.last_decline_code,
    )
    assert charge_of(sub["id"], 0).status == "succeeded"
    assert "subscription.past_due" not in events(env, sub["id"])
    assert "subscription.unpaid" not in events(env, sub["id"])
    for day in (1, 3, 5, 7):  # the dunning days a reopened period would have been debited on
        tick(t0 + dt.timedelta(days=day, seconds=5))
    assert len(_period_payments(sub["id"], 0)) == 1


def test_a_sepa_claim_won_leaves_its_period_paid_and_charged_once(env):
    """(a) needs_response → evidence → won: the period is paid by its one debit, nothing collected again,
    the chargeback and its fee given back, the ledger balanced."""
    _, sub, t0, paying = _paid_sepa_subscription(env)
    before = pending_eur(env)
    d = _disputed_at_beta(env, paying, "debit_unauthorized")
    _claim_is_open_and_the_period_still_paid(env, sub, t0, d)

    r = env.http.post(f"/v1/disputes/{d.id}/evidence", json={"text": "The signed mandate PAYERA-… is attached."})
    assert r.status_code == 200 and r.json()["status"] == "under_review", r.text
    d = _closed_by_the_network(env, d, "won")

    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period) == ("active", 1)
    assert charge_of(sub["id"], 0).status == "succeeded"
    tick(t0 + dt.timedelta(days=9))
    assert [p.id for p in _period_payments(sub["id"], 0)] == [paying.id]  # charged exactly once in total
    assert SubscriptionCharge.objects.filter(subscription_id=sub["id"], period=0).count() == 1
    assert pending_eur(env) == before  # the debit's money is the merchant's again, fee included
    assert "subscription.past_due" not in events(env, sub["id"])
    assert_ledger_sound()


def test_a_sepa_claim_lost_reopens_its_period_which_is_charged_again_once(env):
    """(b) needs_response → lost: only now is the period unpaid again. MD01 ended the mandate when
    the claim opened (no debit under a mandate its holder disowns), so the subscription waits for
    another method (`unpaid`); given a card, the period is charged again, once."""
    cus, sub, t0, paying = _paid_sepa_subscription(env)
    d = _disputed_at_beta(env, paying, "debit_unauthorized")
    _claim_is_open_and_the_period_still_paid(env, sub, t0, d)

    d = _closed_by_the_network(env, d, "lost")
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period) == ("unpaid", 0), (row.status, row.current_period)
    assert (row.last_decline_code, row.last_error["decline_code"]) == ("debit_returned", "MD01")
    assert charge_of(sub["id"], 0).status == "returned"
    assert events(env, sub["id"])[-1] == "subscription.unpaid"

    _, card = saved_card(env, cus=cus)
    env.post(f"/v1/subscriptions/{sub['id']}", {"payment_method": card["payment_method"]["id"]})
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period) == ("active", 1), (row.status, row.current_period)
    again = _period_payments(sub["id"], 0)
    assert len(again) == 2 and paying.id in {p.id for p in again}  # the lost debit, and one charge again
    tick(t0 + dt.timedelta(days=9))
    assert len(_period_payments(sub["id"], 0)) == 2
    assert_ledger_sound()


def test_a_final_sepa_return_still_reopens_its_period_at_once(env):
    """(c) regression: a return (`debit_returned`, opened `lost` by beta: final) reopens the period the
    moment it arrives, on the dunning schedule of the same mandate (MD06 keeps it)."""
    _, sub, t0, paying = _paid_sepa_subscription(env)
    d = _disputed_at_beta(env, paying, "debit_returned")
    assert (d.status, d.reason, d.psp_reason) == ("lost", "debit_returned", "MD06")
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period, row.retries) == ("past_due", 0, 1)
    assert charge_of(sub["id"], 0).status == "returned"
    assert events(env, sub["id"])[-1] == "subscription.past_due"
    tick(row.next_charge_at)  # the dunning retry debits the same mandate
    assert charge_of(sub["id"], 0, 1).payment.payment_method_id == paying.payment_method_id
    assert_ledger_sound()
