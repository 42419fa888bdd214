"""A PSP webhook the PSP signed is authentic: a NUL character in its free text (a decline message)
must not make Payera refuse it. Refused (400), the PSP retries it for days and its outcome is only
applied later by recovery. The free text is kept with U+FFFD in place of the NUL (PostgreSQL's
text and jsonb hold no NUL); a NUL in an id, a reference or the currency (lookup keys) is still 400.

Over real HTTP: Payera served by `live_server`, each sandbox's own webhook taken from it (held back,
not delivered), its free text or a reference changed and signed again with the session's secret.
"""

from __future__ import annotations

import dataclasses
import json
import time

import httpx
import pytest

from payments.models import InboxStatus, PaymentAttempt, PspWebhook
from payments.services import psp_webhook_process_due
from psp_adapters.alpha import webhooks as alpha_webhooks
from psp_adapters.alpha.adapter import AlphaAdapter
from psp_adapters.beta import webhooks as beta_webhooks
from psp_adapters.beta.adapter import BetaAdapter
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = [pytest.mark.scenario]

NUL = "\u0000"
FFFD = "\ufffd"


@pytest.fixture(autouse=True)
def _apply_here(monkeypatch):
    """The test applies the inbox itself, under the capabilities it sets."""
    monkeypatch.setattr("payments.services.webhooks.enqueue", lambda *args, **kwargs: False)


@pytest.fixture
def held(env):
    """Webhooks held back at both sandboxes: the test delivers them itself."""
    for sb in env.sandboxes.values():
        sb.set_webhook_url("")
    return env


def _event(env, psp: str, attempt_id: str, pred) -> dict:
    deadline = time.monotonic() + 10
    while True:
        for e in env.sandboxes[psp].events():
            body = json.loads(e["body"])
            if attempt_id in e["body"] and pred(body):
                return body
        assert time.monotonic() < deadline, f"{psp} sent no such event for {attempt_id}"
        time.sleep(0.1)


def _deliver(env, psp: str, event: dict) -> httpx.Response:
    raw = json.dumps(event).encode()
    secret = env.sandboxes[psp].webhook_secret
    if psp == "alpha":
        headers = {"X-Alpha-Signature": alpha_webhooks.sign(raw, secret)}
    else:
        headers = {"Beta-Signature": beta_webhooks.sign(raw, secret)}
    return httpx.post(
        f"{env.url}/webhooks/psp/{psp}/", content=raw, headers={"Content-Type": "application/json", **headers}
    )


def _row(psp: str, event_id: str) -> PspWebhook:
    deadline = time.monotonic() + 10
    while True:
        psp_webhook_process_due()
        row = PspWebhook.objects.filter(connector=psp, event_id=event_id).first()
        if row is not None and row.status != InboxStatus.RECEIVED:
            return row
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _declined_alpha(env) -> tuple[dict, dict]:
    """An alpha authorization declined after its 3-D Secure challenge failed, the payment still
    waiting for the word: alpha's `authorization.updated` (declined) and the payment."""
    env.merchant.connectors = ["alpha"]
    env.merchant.save(update_fields=["connectors"])
    p = env.pay("4000000000003220")
    assert p["status"] == "requires_action"
    env.sandboxes["alpha"].submit_challenge(p["next_action"]["redirect_to_url"]["url"], "fail")
    att = p["attempts"][0]["id"]
    event = _event(env, "alpha", att, lambda b: b["data"].get("status") == "declined")
    event = {
        **event,
        "id": event["id"] + "-nul",
        "data": {**event["data"], "response_message": f"3-D Secure{NUL}authentication failed"},
    }
    return event, p


def _declined_beta(env) -> tuple[dict, dict]:
    """A beta authorization beta declined, its outcome webhook held: the payment is processing."""
    env.merchant.connectors = ["beta"]
    env.merchant.save(update_fields=["connectors"])
    p = env.pay("4000000000009995")
    assert p["status"] == "processing"
    att = p["attempts"][0]["id"]
    event = _event(env, "beta", att, lambda b: b["eventCode"] == "AUTHORISATION")
    assert event["success"] in (False, "false")
    event = {**event, "eventId": event["eventId"] + "-nul", "reason": f"Not enough{NUL}balance"}
    return event, p


DECLINED = {"alpha": _declined_alpha, "beta": _declined_beta}
EVENT_ID = {"alpha": "id", "beta": "eventId"}
ADAPTER = {"alpha": AlphaAdapter, "beta": BetaAdapter}


@pytest.mark.parametrize("psp", ["alpha", "beta"])
def test_a_signed_decline_with_a_nul_in_its_message_is_applied_with_the_text_kept(held, psp, monkeypatch):
    """Was: 400 `invalid_webhook_payload` ("a NUL character"), the row never stored, the decline
    left for recovery. Now: 200, stored, applied; the message kept with U+FFFD for the NUL."""
    # the event taken at its word (no inquiry): what the message says is what is recorded
    monkeypatch.setattr(
        ADAPTER[psp], "capabilities", dataclasses.replace(ADAPTER[psp].capabilities, inquiry_confirms_webhooks=False)
    )
    event, p = DECLINED[psp](held)
    r = _deliver(held, psp, event)
    assert r.status_code == 200, r.text
    row = _row(psp, event[EVENT_ID[psp]])
    assert row.status == InboxStatus.PROCESSED, row.note
    assert FFFD in row.headers["decline"]["message"] and NUL not in row.headers["decline"]["message"]
    assert "\\u0000" in row.body  # the raw body as received (JSON-escaped NUL is plain text)
    attempt = PaymentAttempt.objects.get(pk=p["attempts"][0]["id"])
    assert attempt.status == "declined"
    assert FFFD in attempt.decline_message
    payment = held.get(p["id"])
    assert payment["status"] == "failed"
    assert FFFD in payment["last_error"]["message"]
    assert_ledger_sound()


@pytest.mark.parametrize("psp", ["alpha", "beta"])
def test_a_signed_decline_with_a_nul_in_its_message_is_confirmed_by_inquiry(held, psp):
    """The default path (the PSP's inquiry confirms the hint): stored, applied, not refused."""
    event, p = DECLINED[psp](held)
    r = _deliver(held, psp, event)
    assert r.status_code == 200, r.text
    row = _row(psp, event[EVENT_ID[psp]])
    assert row.status == InboxStatus.PROCESSED, row.note
    assert row.headers["decline"]["message"].count(FFFD) == 1
    assert held.get(p["id"])["status"] == "failed"


@pytest.mark.parametrize("psp", ["alpha", "beta"])
def test_a_signed_event_with_a_nul_in_a_reference_is_still_400(held, psp):
    """A reference is a lookup key: a NUL in it can not be replaced without naming something else."""
    event, p = DECLINED[psp](held)
    if psp == "alpha":
        event = {**event, "data": {**event["data"], "merchant_reference": event["data"]["merchant_reference"] + NUL}}
    else:
        event = {**event, "merchantReference": event["merchantReference"] + NUL}
    r = _deliver(held, psp, event)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "webhook_payload_invalid"
    assert not PspWebhook.objects.filter(connector=psp, event_id=event[EVENT_ID[psp]]).exists()


@pytest.mark.parametrize("psp", ["alpha", "beta"])
def test_a_signed_utf16_body_is_stored_not_a_500(held, psp):
    """JSON may come in UTF-16 (json.loads detects it, the adapters read it): the raw body was
    decoded as UTF-8, every other byte a NUL, and the insert into `body` failed (500, the PSP
    retrying for days). The body is now decoded as the JSON it is."""
    event, p = DECLINED[psp](held)
    event = json.loads(json.dumps(event).replace("\\u0000", " "))  # no NUL in its text: only the encoding
    event = {**event, EVENT_ID[psp]: event[EVENT_ID[psp]] + "-utf16"}
    raw = json.dumps(event).encode("utf-16")
    secret = held.sandboxes[psp].webhook_secret
    if psp == "alpha":
        headers = {"X-Alpha-Signature": alpha_webhooks.sign(raw, secret)}
    else:
        headers = {"Beta-Signature": beta_webhooks.sign(raw, secret)}
    r = httpx.post(
        f"{held.url}/webhooks/psp/{psp}/", content=raw, headers={"Content-Type": "application/json", **headers}
    )
    assert r.status_code == 200, r.text
    row = _row(psp, event[EVENT_ID[psp]])
    assert row.status == InboxStatus.PROCESSED, row.note
    assert NUL not in row.body
    assert json.loads(row.body)[EVENT_ID[psp]] == event[EVENT_ID[psp]]


LONE_SURROGATE = "\ud800"


@pytest.mark.parametrize("psp", ["alpha", "beta"])
def test_a_signed_decline_with_a_lone_surrogate_in_its_message_is_applied(held, psp, monkeypatch):
    """JSON may escape half of a UTF-16 pair (`"\\ud800"`): Python reads it as a lone surrogate,
    which PostgreSQL's jsonb refuses and UTF-8 can not encode — the insert failed (500) and the PSP
    retried an authentic event for days, as with a NUL. Kept with U+FFFD in its place."""
    monkeypatch.setattr(
        ADAPTER[psp], "capabilities", dataclasses.replace(ADAPTER[psp].capabilities, inquiry_confirms_webhooks=False)
    )
    event, p = DECLINED[psp](held)
    event = json.loads(json.dumps(event).replace("\\u0000", "\\ud800"))
    r = _deliver(held, psp, event)
    assert r.status_code == 200, r.text
    row = _row(psp, event[EVENT_ID[psp]])
    assert row.status == InboxStatus.PROCESSED, row.note
    assert FFFD in row.headers["decline"]["message"]
    attempt = PaymentAttempt.objects.get(pk=p["attempts"][0]["id"])
    assert attempt.status == "declined" and FFFD in attempt.decline_message
    assert held.get(p["id"])["status"] == "failed"


@pytest.mark.parametrize("psp", ["alpha", "beta"])
def test_a_signed_event_with_a_lone_surrogate_in_a_reference_is_400(held, psp):
    event, p = DECLINED[psp](held)
    if psp == "alpha":
        event = {
            **event,
            "data": {**event["data"], "merchant_reference": event["data"]["merchant_reference"] + LONE_SURROGATE},
        }
    else:
        event = {**event, "merchantReference": event["merchantReference"] + LONE_SURROGATE}
    event = json.loads(json.dumps(event).replace("\\u0000", " "))
    r = _deliver(held, psp, event)
    assert r.status_code == 400, r.text
    assert not PspWebhook.objects.filter(connector=psp, event_id=event[EVENT_ID[psp]]).exists()
