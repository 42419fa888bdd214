"""A contested SEPA claim lost reopens its period once, however often and by whichever path the loss
arrives (docs/decisions/sepa-return-vs-contestable-dispute.md: the reopen is in `_dispute_follow`'s
`lost` branch, behind the dispute's `mark_lost`).

Beta's `dispute.closed` (lost) webhook applied twice and reconciliation's dispute inquiry asking
beta at the same moment (real threads on PostgreSQL): one `mark_lost`, one `dispute.closed`, the
charge returned once, one `subscription.unpaid` (MD01 ended the mandate when the claim opened), the
ledger balanced. A card chargeback lost on a subscription's charge reopens nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from payera.events.models import Event
from payments.models import Dispute, PaymentEvent, Subscription, SubscriptionCharge
from payments.services import dispute_apply_event, subscriptions_run
from payments.services.recovery import dispute_settlement_inquire
from psp_adapters.beta.webhooks import sign
from psp_adapters.port import DisputeStatus
from psp_adapters.registry import get_adapter
from tests.helpers import race
from tests.scenarios.conftest import assert_ledger_sound
from tests.scenarios.test_apm import events_of, wait_for
from tests.scenarios.test_disputes import _closed_by_the_network
from tests.scenarios.test_subscription_debit_returned import charge_of
from tests.scenarios.test_subscription_sepa_dispute_contested import _disputed_at_beta, _paid_sepa_subscription
from tests.scenarios.test_subscriptions import anchor, events, saved_card, subscribe, tick

pytestmark = [pytest.mark.scenario]


def test_a_sepa_claim_lost_by_two_webhooks_and_an_inquiry_at_once_reopens_its_period_once(env):
    _, sub, _, paying = _paid_sepa_subscription(env)
    d = _disputed_at_beta(env, paying, "debit_unauthorized")
    assert d.status == "needs_response"
    attempt = paying.attempts.get()
    sb = env.sandboxes["beta"]
    sb.set_webhook_url("")  # the network's decision stays held at beta: the test delivers it
    try:
        assert sb.close_dispute(d.psp_dispute_id, "lost").status_code == 200
        wait_for(lambda: len(events_of(sb, attempt.id, "dispute")) == 2)
    finally:
        sb.set_webhook_url(f"{env.url}/webhooks/psp/beta/")
    adapter = get_adapter("beta")
    parsed = [
        adapter.parse_webhook(
            body=e["body"].encode(), headers={"Beta-Signature": sign(e["body"].encode(), sb.webhook_secret)}
        )
        for e in events_of(sb, attempt.id, "dispute")
    ]
    lost = next(e for e in parsed if e.dispute.status == DisputeStatus.LOST)

    webhook = lambda: dispute_apply_event(connector="beta", event=lost, actor="psp:beta")  # noqa: E731
    inquiry = lambda: dispute_settlement_inquire(attempt_id=attempt.id, psp_dispute_id=d.psp_dispute_id)  # noqa: E731
    calls = iter([webhook, webhook, inquiry])  # each thread takes one as the barrier releases it
    race(3, lambda: next(calls)())

    d.refresh_from_db()
    assert d.status == "lost"
    assert PaymentEvent.objects.filter(object_id=d.id, transition="mark_lost").count() == 1
    closed = Event.objects.filter(merchant_id=env.merchant.id, type="dispute.closed", data__object__id=d.id)
    assert closed.count() == 1
    assert charge_of(sub["id"], 0).status == "returned"
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period) == ("unpaid", 0)
    assert events(env, sub["id"]).count("subscription.unpaid") == 1
    assert Dispute.objects.filter(payment_id=paying.id).count() == 1
    assert_ledger_sound()


@pytest.mark.parametrize("reason", ["fraudulent", "debit_returned"])
def test_a_card_chargeback_lost_on_a_subscription_charge_reopens_nothing(env, reason):
    """Card disputes are unaffected: a card chargeback on a subscription's paid charge, lost, leaves
    the period paid and nothing charged again. Whatever reason code the PSP gives: alpha (cards only)
    maps its `RTRN` to `debit_returned` (opened `lost`, as the sandbox's hook sends it on a card), but
    a card payment is no debit: only a payment made under a mandate is a returned debit. Before,
    `[debit_returned]` reopened the card subscription's period (`past_due` on period 0, the charge
    `returned`)."""
    cus, card = saved_card(env)
    sub = subscribe(env, cus, card["payment_method"]["id"])
    t0 = anchor(sub)
    paying = charge_of(sub["id"], 0).payment
    env.wait(paying.id, lambda p: p["status"] == "succeeded")
    subscriptions_run(now_=t0 + dt.timedelta(seconds=1))
    attempt = paying.attempts.get(status="captured")
    env.sandboxes[attempt.connector].open_dispute(attempt.psp_reference, reason)
    wait_for(lambda: Dispute.objects.filter(payment_id=paying.id).exists())
    d = Dispute.objects.get(payment_id=paying.id)
    if d.status != "lost":  # a chargeback opens needs_response; alpha's RTRN opens lost
        d = _closed_by_the_network(env, d, "lost")
    assert (d.reason, d.status) == (reason, "lost")
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period, row.last_decline_code) == ("active", 1, "")
    assert charge_of(sub["id"], 0).status == "succeeded"
    tick(t0 + dt.timedelta(days=9))
    assert SubscriptionCharge.objects.filter(subscription_id=sub["id"], period=0).count() == 1
    assert "subscription.past_due" not in events(env, sub["id"])
    assert_ledger_sound()
