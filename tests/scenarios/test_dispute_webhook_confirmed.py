"""A PSP dispute webhook is a hint: Payera asks the PSP about the dispute (`inquire_dispute`) and
applies what the PSP holds — status, amount, currency — never what the message says. Over real
HTTP to the alpha sandbox, whose webhooks are signed with the session's secret: the forged events
below pass verification, and only the inquiry stops them.

What was wrong (fix 14a): the inbound path applied a dispute event as sent
(payments/services/webhooks.py `_apply` → `dispute_apply_event(event=e)`). A validly signed but
forged `won` posted `chargeback_won` for a dispute the PSP held open or lost, and a forged
`dispute.created` for a dispute the PSP never opened took the money and the chargeback fee from
the merchant."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from ledger.models import Journal
from payments.models import Dispute, InboxStatus, PspWebhook
from payments.services import dispute_settlement_inquire, psp_webhook_process_due
from payments.services.webhooks import psp_webhook_process
from psp_adapters.alpha.webhooks import sign
from tests.scenarios.conftest import assert_ledger_sound, fee, pending_eur

pytestmark = [pytest.mark.scenario]

CHARGEBACK_FEE = 1500  # settings.PAYMENTS_CHARGEBACK_FEE["EUR"]


@pytest.fixture(autouse=True)
def _apply_here(monkeypatch):
    """The test applies the inbox itself (`psp_webhook_process_due`): no task reaches a worker."""
    monkeypatch.setattr("payments.services.webhooks.enqueue", lambda *args, **kwargs: False)


@pytest.fixture
def alpha(env):
    """Alpha only, its webhooks held back: the test delivers (or forges) them itself."""
    env.merchant.connectors = ["alpha"]
    env.merchant.save(update_fields=["connectors"])
    env.sandboxes["alpha"].set_webhook_url("")
    return env


def _sent(env, pred, what: str) -> dict:
    deadline = time.monotonic() + 15
    while True:
        found = [json.loads(e["body"]) for e in env.sandboxes["alpha"].events() if pred(json.loads(e["body"]))]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"alpha sent no {what}"
        time.sleep(0.1)


def _dispute_created(env, attempt_id: str) -> dict:
    return _sent(env, lambda b: b.get("type") == "dispute.created"
                 and b["data"].get("authorization_reference") == attempt_id, "dispute.created")


def _deliver(env, body: dict) -> None:
    raw = json.dumps(body).encode()
    r = httpx.post(f"{env.url}/webhooks/psp/alpha/", content=raw, headers={
        "Content-Type": "application/json", "X-Alpha-Signature": sign(raw, env.sandboxes["alpha"].webhook_secret),
    })
    assert r.status_code == 200, r.text  # the signature is good


def _row(event_id: str) -> PspWebhook:
    deadline = time.monotonic() + 10
    while True:
        psp_webhook_process_due()
        row = PspWebhook.objects.filter(connector="alpha", event_id=event_id).first()
        if row is not None and row.status != InboxStatus.RECEIVED:
            return row
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _paid(env, card: str = "4000000000000259") -> tuple[dict, str]:
    p = env.pay(card)
    assert p["status"] == "succeeded", p
    return p, p["attempts"][0]["id"]


def _opened(env) -> tuple[dict, Dispute, dict]:
    """A payment with the dispute card, its genuine dispute.created delivered and applied."""
    p, att = _paid(env)
    created = _dispute_created(env, att)
    _deliver(env, created)
    row = _row(created["id"])
    assert row.status == InboxStatus.PROCESSED, row.note
    assert row.note == "dispute: created (confirmed by inquiry: needs_response)"
    return p, Dispute.objects.get(payment_id=p["id"]), created


def _journals(prefix: str, dispute: Dispute) -> int:
    return Journal.objects.filter(reference=f"{prefix}:{dispute.id}").count()


def test_the_genuine_dispute_webhooks_still_open_and_close_the_dispute(alpha):
    env = alpha
    p, d, created = _opened(env)
    assert (d.status, d.amount, d.currency, d.fee) == ("needs_response", 1000, "EUR", CHARGEBACK_FEE)
    assert pending_eur(env) == 1000 - fee(1000) - 1000 - CHARGEBACK_FEE
    env.post(f"/v1/disputes/{d.id}/evidence", {"text": "Signed delivery receipt attached."})
    assert env.sandboxes["alpha"].close_dispute(d.psp_dispute_id, "won").status_code == 200
    closed = _sent(env, lambda b: b.get("type") == "dispute.closed" and b["data"]["id"] == d.psp_dispute_id,
                   "dispute.closed")
    _deliver(env, closed)
    assert _row(closed["id"]).note == "dispute: won (confirmed by inquiry: won)"
    d.refresh_from_db()
    assert d.status == "won" and _journals("chargeback_won", d) == 1
    assert pending_eur(env) == 1000 - fee(1000)
    # the opening delivered late, again (another event id): the PSP says won, nothing moves
    _deliver(env, {**created, "id": created["id"] + "-late"})
    assert _row(created["id"] + "-late").note == "dispute: unchanged (the event said needs_response, 1000 EUR;" \
                                                 " the inquiry said won, 1000 EUR)"
    assert _journals("chargeback", d) == 1 and _journals("chargeback_won", d) == 1
    assert env.get(p["id"])["amount_disputed"] == 0
    assert_ledger_sound()


def test_a_forged_won_for_a_dispute_the_psp_holds_open_posts_nothing(alpha):
    env = alpha
    _, d, created = _opened(env)
    before = pending_eur(env)
    forged = {**created, "id": created["id"] + "-forged", "type": "dispute.closed",
              "data": {**created["data"], "status": "won"}}
    _deliver(env, forged)
    row = _row(forged["id"])
    assert row.status == InboxStatus.PROCESSED
    assert "the event said won" in row.note and "the inquiry said needs_response" in row.note
    d.refresh_from_db()
    assert d.status == "needs_response"
    assert _journals("chargeback_won", d) == 0 and _journals("chargeback_fee_won", d) == 0
    assert pending_eur(env) == before
    assert_ledger_sound()


def test_a_forged_won_for_a_dispute_the_psp_closed_lost_applies_the_loss(alpha):
    """The PSP decided `lost` and its webhook has not reached Payera yet; a forged `won` comes
    first. The inquiry says lost: the dispute is closed lost, no money goes back."""
    env = alpha
    p, d, created = _opened(env)
    assert env.sandboxes["alpha"].close_dispute(d.psp_dispute_id, "lost").status_code == 200  # webhook held
    forged = {**created, "id": created["id"] + "-forged", "type": "dispute.closed",
              "data": {**created["data"], "status": "won"}}
    _deliver(env, forged)
    row = _row(forged["id"])
    assert row.status == InboxStatus.PROCESSED and "the inquiry said lost" in row.note
    d.refresh_from_db()
    assert d.status == "lost"
    assert _journals("chargeback_won", d) == 0
    assert pending_eur(env) == 1000 - fee(1000) - 1000 - CHARGEBACK_FEE
    assert env.get(p["id"])["amount_disputed"] == 1000
    assert_ledger_sound()


def test_a_forged_dispute_the_psp_never_opened_is_refused_and_posts_nothing(alpha):
    env = alpha
    p, att = _paid(env, "4242424242424242")  # no dispute at alpha
    _, other_att = _paid(env)
    genuine = _dispute_created(env, other_att)  # a real dispute, of another payment
    # signed events naming our undisputed payment: a dispute id alpha never issued, and the other
    # payment's real dispute id
    ours = {"authorization_reference": att, "authorization_id": env.sandboxes["alpha"].payments(att)[0]["id"]}
    for event_id, dispute_id in (("evt_forged_unknown", "dp_forged0000"), ("evt_forged_moved", genuine["data"]["id"])):
        _deliver(env, {**genuine, "id": event_id, "data": {**genuine["data"], **ours, "id": dispute_id}})
        row = _row(event_id)
        assert row.status == InboxStatus.FAILED  # raised to operations at once, not parked
        assert row.note.startswith("refused: not confirmed: alpha does not know dispute"), row.note
        assert psp_webhook_process(webhook_id=row.pk) == InboxStatus.FAILED  # applying it again changes nothing
    assert not Dispute.objects.filter(payment_id=p["id"]).exists()
    assert not Journal.objects.filter(reference__startswith="chargeback").exists()
    assert pending_eur(env) == 2 * (1000 - fee(1000))
    assert_ledger_sound()


def test_an_unanswered_dispute_inquiry_parks_the_webhook_until_the_psp_answers(alpha, settings):
    env = alpha
    p, att = _paid(env)
    created = _dispute_created(env, att)
    good = settings.PSP_CONNECTORS["alpha"]
    settings.PSP_CONNECTORS = {**settings.PSP_CONNECTORS, "alpha": {
        **good, "OPTIONS": {**good["OPTIONS"], "base_url": "http://127.0.0.1:1"}}}
    _deliver(env, created)
    row = _row(created["id"])
    assert row.status == InboxStatus.PARKED and "not confirmed yet" in row.note
    assert not Dispute.objects.filter(payment_id=p["id"]).exists()
    settings.PSP_CONNECTORS = {**settings.PSP_CONNECTORS, "alpha": good}
    PspWebhook.objects.filter(pk=row.pk).update(next_try_at=row.received_at)
    row = _row(created["id"])
    assert row.status == InboxStatus.PROCESSED and row.note.startswith("dispute: created")
    assert Dispute.objects.filter(payment_id=p["id"]).count() == 1
    assert_ledger_sound()


def test_the_webhook_and_reconciliations_dispute_inquiry_apply_once(alpha):
    env = alpha
    p, att = _paid(env)
    created = _dispute_created(env, att)
    assert dispute_settlement_inquire(attempt_id=att, psp_dispute_id=created["data"]["id"])
    d = Dispute.objects.get(payment_id=p["id"])
    _deliver(env, created)
    assert _row(created["id"]).note == "dispute: unchanged (confirmed by inquiry: needs_response)"
    assert dispute_settlement_inquire(attempt_id=att, psp_dispute_id=created["data"]["id"])
    assert Dispute.objects.filter(payment_id=p["id"]).count() == 1
    assert _journals("chargeback", d) == 1 and _journals("chargeback_fee", d) == 1
    assert pending_eur(env) == 1000 - fee(1000) - 1000 - CHARGEBACK_FEE
    assert_ledger_sound()
