"""Disputes (chargebacks), end to end: card 4000000000000259 gets a dispute by webhook after
capture; the network's decision comes as the sandbox's own webhook too (`POST
/_sandbox/disputes/<id>/close`, docs/sandbox.md). Repeats and late, contradicting updates are PSP
dispute events built here from the stored one and applied through the service the worker calls."""

from __future__ import annotations

import dataclasses
import time

import httpx
import pytest

from payera.events.models import Event
from payments.models import Dispute, PspWebhook
from payments.services import dispute_apply_event, psp_webhook_process_due
from payments.services.webhooks import event_from_json
from psp_adapters.port import DisputeInfo, DisputeStatus
from tests.merchants.factories import MerchantFactory, make_api_key
from tests.scenarios.conftest import assert_ledger_sound, fee, pending_eur

pytestmark = [pytest.mark.scenario]

CHARGEBACK_FEE = 1500  # settings.PAYMENTS_CHARGEBACK_FEE["EUR"]


def _disputed(env) -> tuple[dict, Dispute]:
    p = env.pay("4000000000000259")
    assert p["status"] == "succeeded", p
    deadline = time.monotonic() + 15
    while not Dispute.objects.filter(payment_id=p["id"]).exists():
        assert time.monotonic() < deadline, "no dispute arrived"
        time.sleep(0.1)
        psp_webhook_process_due()
    return p, Dispute.objects.get(payment_id=p["id"])


def _psp_update(dispute: Dispute, status: DisputeStatus, event_id: str):
    """The dispute's webhook event as stored, with another event id and the PSP's new status."""
    row = PspWebhook.objects.filter(connector=dispute.connector, kind="dispute",
                                    reference=dispute.attempt_id).order_by("id").first()
    e = event_from_json(row.headers)
    info = DisputeInfo(psp_dispute_id=e.dispute.psp_dispute_id, reason=e.dispute.reason, status=status,
                       psp_reason=e.dispute.psp_reason)
    return dataclasses.replace(e, event_id=event_id, dispute=info)


def _events(env, type_: str) -> list[Event]:
    return list(Event.objects.filter(merchant_id=env.merchant.id, type=type_))


def test_dispute_is_created_once_and_takes_amount_and_fee_from_the_merchant(env):
    p, d = _disputed(env)
    assert (d.status, d.reason, d.amount, d.currency, d.fee) == ("needs_response", "fraudulent", 1000, "EUR",
                                                                  CHARGEBACK_FEE)
    # the PSP delivers the same webhook again, and another event for the same PSP dispute arrives
    alpha = env.sandboxes["alpha"]
    sent = [e for e in alpha.events() if e["type"] == "dispute"]
    assert sent
    alpha.resend(sent[-1]["id"])
    time.sleep(1.0)
    psp_webhook_process_due()
    note = dispute_apply_event(connector="alpha", event=_psp_update(d, DisputeStatus.NEEDS_RESPONSE, "evt_again"),
                               actor="psp:alpha")
    assert note == "dispute: unchanged"
    assert Dispute.objects.filter(payment_id=p["id"]).count() == 1
    assert len(_events(env, "dispute.created")) == 1
    assert _events(env, "dispute.created")[0].data["object"]["id"] == d.id

    assert pending_eur(env) == 1000 - fee(1000) - 1000 - CHARGEBACK_FEE
    assert_ledger_sound()
    pay = env.get(p["id"])
    assert pay["amount_disputed"] == 1000 and pay["amount_captured"] == 1000 and pay["status"] == "succeeded"

    listed = env.http.get("/v1/disputes").json()
    assert [x["id"] for x in listed["data"]] == [d.id]
    got = env.http.get(f"/v1/disputes/{d.id}").json()
    assert {k: got[k] for k in ("id", "object", "payment", "amount", "currency", "reason", "status")} == {
        "id": d.id, "object": "dispute", "payment": p["id"], "amount": 1000, "currency": "EUR",
        "reason": "fraudulent", "status": "needs_response",
    }


def _closed_by_the_network(env, d: Dispute, status: str) -> Dispute:
    """The sandbox decides the dispute and sends its webhook; Payera's inbox applies it."""
    assert env.sandboxes[d.connector].close_dispute(d.psp_dispute_id, status).status_code == 200
    deadline = time.monotonic() + 15
    while True:
        psp_webhook_process_due()
        d.refresh_from_db()
        if d.status == status:
            return d
        assert time.monotonic() < deadline, f"dispute never became {status}: {d.status}"
        time.sleep(0.1)


def test_won_dispute_gives_everything_back(env):
    p, d = _disputed(env)
    r = env.http.post(f"/v1/disputes/{d.id}/evidence", json={"text": "Signed delivery receipt attached."})
    assert r.status_code == 200 and r.json()["status"] == "under_review", r.text
    d = _closed_by_the_network(env, d, "won")
    assert d.closed_at is not None
    # the PSP's update delivered again changes nothing
    won = _psp_update(d, DisputeStatus.WON, "evt_won_again")
    assert dispute_apply_event(connector="alpha", event=won, actor="psp:alpha") == "dispute: unchanged"
    assert pending_eur(env) == 1000 - fee(1000)
    assert env.get(p["id"])["amount_disputed"] == 0
    closed = _events(env, "dispute.closed")
    assert len(closed) == 1 and closed[0].data["object"]["status"] == "won"
    assert_ledger_sound()


def test_a_dispute_won_without_evidence_does_not_claim_the_merchant_sent_some(env):
    """The network decides for the merchant before it answered (needs_response -> won). The
    machine only knew under_review -> won, so the service ran `submit_evidence` first on the
    PSP's behalf: the merchant saw `evidence_submitted` set (and the transition log a submission)
    for evidence it never sent. Won is now reachable from needs_response directly."""
    from payments.models import PaymentEvent

    p, d = _disputed(env)
    d = _closed_by_the_network(env, d, "won")
    assert pending_eur(env) == 1000 - fee(1000)
    got = env.http.get(f"/v1/disputes/{d.id}").json()
    assert (got["status"], got["evidence_submitted"]) == ("won", None)
    [closed] = _events(env, "dispute.closed")
    assert (closed.data["object"]["status"], closed.data["object"]["evidence_submitted"]) == ("won", None)
    steps = list(PaymentEvent.objects.filter(object_id=d.id).order_by("id").values_list("from_status", "to_status"))
    assert steps[-1:] == [("needs_response", "won")] and ("needs_response", "under_review") not in steps
    assert_ledger_sound()


def test_lost_dispute_keeps_the_chargeback(env):
    p, d = _disputed(env)
    d = _closed_by_the_network(env, d, "lost")  # unanswered: needs_response -> lost
    assert dispute_apply_event(connector="alpha", event=_psp_update(d, DisputeStatus.WON, "evt_late_won"),
                               actor="psp:alpha") == "dispute: unchanged"
    d.refresh_from_db()
    assert d.status == "lost"
    assert pending_eur(env) == 1000 - fee(1000) - 1000 - CHARGEBACK_FEE
    assert env.get(p["id"])["amount_disputed"] == 1000
    assert [e.data["object"]["status"] for e in _events(env, "dispute.closed")] == ["lost"]


def test_evidence_api_validates_is_idempotent_and_is_tenant_scoped(env):
    _, d = _disputed(env)
    url = f"/v1/disputes/{d.id}/evidence"
    assert env.http.post(url, json={"text": "x" * 10_001}).status_code == 400
    assert env.http.post(url, json={}).status_code == 400
    first = env.http.post(url, json={"text": "Receipt."})
    assert first.status_code == 200 and first.json()["status"] == "under_review"
    again = env.http.post(url, json={"text": "Receipt."})
    assert again.status_code == 200 and again.json() == first.json()
    assert env.http.post(url, json={"text": "Something else."}).status_code == 400
    d.refresh_from_db()
    assert d.status == "under_review" and d.evidence_text == "Receipt."

    other = make_api_key(MerchantFactory(connectors=["alpha"]))
    with httpx.Client(base_url=env.url, headers={"Authorization": f"Bearer {other.secret}"}) as http:
        assert http.get(f"/v1/disputes/{d.id}").status_code == 404
        assert http.post(url, json={"text": "Receipt."}).status_code == 404
        assert http.get("/v1/disputes").json()["data"] == []
