"""Session 13's review: a verified authorization webhook is "a hint, confirmed by a status inquiry" — but
the inquiry asks about the pspReference the EVENT names (`attempt.psp_reference or
e.payment.psp_reference`, payments/services/webhooks.py `_apply_confirmed`), and its answer is
recorded for our attempt without checking that it is about that attempt
(`result.payment.reference`). For an attempt whose PSP reference we do not know yet (a timeout:
`unknown`), an event naming our attempt and ANOTHER payment's pspReference is "confirmed" by that
other payment's state: our payment is marked succeeded and its capture posted to the merchant's
balance, while the PSP never took a cent for it (the PSP would answer "no such reference" for our
attempt id). The docs name exactly this (a PSP bug, a leaked webhook secret) as what the inquiry
must stop. Now an inquiry answer about another reference is not recorded (the event is ignored)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from payments.models import AS, InboxStatus, Payment, PaymentAttempt, PspWebhook
from payments.services import psp_webhook_process_due
from psp_adapters.beta.webhooks import sign
from tests.scenarios.conftest import pending_eur

pytestmark = [pytest.mark.scenario]


@pytest.fixture(autouse=True)
def _apply_here(monkeypatch):
    monkeypatch.setattr("payments.services.webhooks.enqueue", lambda *args, **kwargs: False)


@pytest.fixture
def beta_held(env):
    env.merchant.connectors = ["beta"]
    env.merchant.save(update_fields=["connectors"])
    env.sandboxes["beta"].set_webhook_url("")
    return env


def _authorization_event(env, attempt_id: str) -> dict:
    sb = env.sandboxes["beta"]
    deadline = time.monotonic() + 10
    while True:
        found = [e for e in sb.events() if attempt_id in e["body"] and '"AUTHORISATION"' in e["body"]]
        if found:
            return json.loads(found[0]["body"])
        assert time.monotonic() < deadline, "beta sent no authorization event"
        time.sleep(0.1)


def _deliver(env, body: dict) -> httpx.Response:
    raw = json.dumps(body).encode()
    return httpx.post(
        f"{env.url}/webhooks/psp/beta/",
        content=raw,
        headers={
            "Content-Type": "application/json",
            "Beta-Signature": sign(raw, env.sandboxes["beta"].webhook_secret),
        },
    )


def _processed(event_id: str) -> PspWebhook:
    deadline = time.monotonic() + 10
    while True:
        psp_webhook_process_due()
        row = PspWebhook.objects.filter(connector="beta", event_id=event_id).first()
        if row is not None and row.status != InboxStatus.RECEIVED:
            return row
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_an_event_naming_our_attempt_with_another_payments_psp_reference_does_not_settle_it(beta_held):
    env = beta_held
    sb = env.sandboxes["beta"]
    # our payment: beta's gateway answers 504 and beta never records it -> attempt `unknown`,
    # no PSP reference known, payment `processing` (recovery would find "no such reference")
    victim = env.pay(metadata={"sandbox_fail_beta": "504"})
    assert victim["status"] == "processing", victim
    victim_att = victim["attempts"][0]["id"]
    assert PaymentAttempt.objects.get(pk=victim_att).status == AS.UNKNOWN
    assert sb.payments(victim_att) == []  # beta holds nothing for it

    # another payment of the same amount, genuinely captured at beta
    other = env.pay()
    other_att = other["attempts"][0]["id"]
    genuine = _authorization_event(env, other_att)
    assert genuine["success"] in (True, "true")
    assert _deliver(env, genuine).status_code == 200
    _processed(genuine["eventId"])
    assert env.get(other["id"])["status"] == "succeeded"
    before = pending_eur(env)

    # a correctly signed event naming OUR attempt with the OTHER payment's pspReference
    forged = {**genuine, "eventId": "forged-" + victim_att, "merchantReference": victim_att}
    assert _deliver(env, forged).status_code == 200
    row = _processed(forged["eventId"])

    victim_now = Payment.objects.get(pk=victim["id"])
    attempt = PaymentAttempt.objects.get(pk=victim_att)
    assert victim_now.status != "succeeded", (
        f"settled by another payment's authorization: row {row.status} '{row.note}', attempt {attempt.status} "
        f"psp_reference={attempt.psp_reference} (the other's: {genuine['pspReference']}); beta holds for it: "
        f"{sb.payments(victim_att)}"
    )
    assert pending_eur(env) == before, "a capture beta never made was credited to the merchant"
