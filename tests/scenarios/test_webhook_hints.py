"""A verified PSP webhook is a hint: Payera confirms it by a status inquiry and records what the
PSP says, never what the message says (issue 6). Over real HTTP to the beta sandbox, whose
webhooks are signed with the session's secret — so the forged events below pass verification
and only the inquiry stops them."""

from __future__ import annotations

import dataclasses
import json
import time

import httpx
import pytest

from payments.models import AS, InboxStatus, Payment, PaymentAttempt, PaymentEvent, PspWebhook
from payments.services import psp_webhook_process_due
from psp_adapters.beta import BetaAdapter
from psp_adapters.beta.webhooks import sign
from tests.scenarios.conftest import assert_ledger_sound, pending_eur

pytestmark = [pytest.mark.scenario]


@pytest.fixture(autouse=True)
def _apply_here(monkeypatch):
    """These tests apply the inbox themselves (`psp_webhook_process_due`) under settings they
    change: no task may reach a real worker of the session (tests/events/worker.py), whose own
    settings would confirm what the test wants unconfirmed."""
    monkeypatch.setattr("payments.services.webhooks.enqueue", lambda *args, **kwargs: False)


@pytest.fixture
def beta_held(env):
    """Beta only, its webhooks held back: the test delivers (or forges) them itself."""
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
    return httpx.post(f"{env.url}/webhooks/psp/beta/", content=raw, headers={
        "Content-Type": "application/json", "Beta-Signature": sign(raw, env.sandboxes["beta"].webhook_secret),
    })


def _row(event_id: str) -> PspWebhook:
    deadline = time.monotonic() + 10
    while True:
        psp_webhook_process_due()
        row = PspWebhook.objects.filter(connector="beta", event_id=event_id).first()
        if row is not None and row.status != InboxStatus.RECEIVED:
            return row
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_signed_decline_for_an_approved_authorization_records_the_psps_approval(beta_held):
    env = beta_held
    p = env.pay(capture_method="manual")
    att = p["attempts"][0]["id"]
    genuine = _authorization_event(env, att)
    assert genuine["success"] in (True, "true")
    forged = {**genuine, "eventId": genuine["eventId"] + "x", "success": False,
              "reasonCode": "12", "reason": "Insufficient funds"}
    assert _deliver(env, forged).status_code == 200  # the signature is good
    row = _row(forged["eventId"])
    assert row.status == InboxStatus.PROCESSED
    assert "the inquiry said approved" in row.note
    p = env.get(p["id"])
    assert p["status"] == "requires_capture"  # what beta holds, not what the message claimed
    assert p["attempts"][0]["status"] == "authorized"
    assert not PaymentEvent.objects.filter(payment_id=p["id"], to_status="failed").exists()
    assert_ledger_sound()


def test_a_signed_approval_for_an_authorization_the_psp_does_not_hold_is_parked_not_applied(beta_held):
    env = beta_held
    p = env.pay(capture_method="manual")
    att = p["attempts"][0]["id"]
    genuine = _authorization_event(env, att)
    # A second payment whose authorization beta never received (its webhooks are held and the
    # sandbox forgets it): a signed "approved" for it must not move it.
    other = env.pay("4000000000009995", capture_method="manual")
    other_att = other["attempts"][0]["id"]
    other_evt = _authorization_event(env, other_att)
    assert other_evt["success"] in (False, "false")  # beta declined it
    forged = {**genuine, "eventId": "forged-" + other_att, "merchantReference": other_att,
              "pspReference": other_evt["pspReference"]}
    assert _deliver(env, forged).status_code == 200
    row = _row(forged["eventId"])
    # the inquiry says declined: the decline is recorded, the forged approval never is
    assert row.status == InboxStatus.PROCESSED and "the inquiry said declined" in row.note
    other = env.get(other["id"])
    assert other["status"] == "failed"
    assert other["last_error"]["decline_code"] == "insufficient_funds"
    assert_ledger_sound()


def test_an_event_the_psp_cannot_confirm_yet_is_parked_and_applied_once_it_can(beta_held, settings):
    env = beta_held
    p = env.pay(capture_method="manual")
    att = p["attempts"][0]["id"]
    genuine = _authorization_event(env, att)
    good = settings.PSP_CONNECTORS["beta"]
    # beta's status API unreachable (a closed port): the hint cannot be confirmed
    settings.PSP_CONNECTORS = {**settings.PSP_CONNECTORS, "beta": {
        **good, "OPTIONS": {**good["OPTIONS"], "base_url": "http://127.0.0.1:1"}}}
    assert _deliver(env, genuine).status_code == 200
    row = _row(genuine["eventId"])
    assert row.status == InboxStatus.PARKED
    assert "not confirmed yet" in row.note
    assert env.get(p["id"])["status"] == "processing"
    # the PSP answers again; the parked row comes due and is confirmed
    settings.PSP_CONNECTORS = {**settings.PSP_CONNECTORS, "beta": good}
    PspWebhook.objects.filter(pk=row.pk).update(next_try_at=row.received_at)
    row = _row(genuine["eventId"])
    assert row.status == InboxStatus.PROCESSED
    assert env.get(p["id"])["status"] == "requires_capture"
    assert_ledger_sound()


def test_a_psp_whose_inquiry_cannot_confirm_webhooks_has_its_signed_events_applied(beta_held, monkeypatch):
    """The other branch: where the PSP's status API cannot be trusted to confirm, the verified
    event is applied as it says (still order-proof and idempotent)."""
    env = beta_held
    monkeypatch.setattr(BetaAdapter, "capabilities",
                        dataclasses.replace(BetaAdapter.capabilities, inquiry_confirms_webhooks=False))
    p = env.pay(capture_method="manual")
    att = p["attempts"][0]["id"]
    genuine = _authorization_event(env, att)
    forged = {**genuine, "eventId": genuine["eventId"] + "y", "success": False, "reasonCode": "12",
              "reason": "Insufficient funds"}
    assert _deliver(env, forged).status_code == 200
    row = _row(forged["eventId"])
    assert row.status == InboxStatus.PROCESSED and "confirmed" not in row.note
    assert env.get(p["id"])["status"] == "failed"  # taken at its word


def test_shoppers_return_and_the_webhook_racing_end_in_one_transition_and_one_posting(beta_held):
    """Issue 6: the 3-D Secure return and the PSP's webhook for the same attempt arrive at once
    (four of each, from threads): one transition, one posting, whichever wins."""
    import threading

    from ledger.selectors import journal_list
    from tests.scenarios.conftest import fee, pending_eur

    env = beta_held
    sb = env.sandboxes["beta"]
    p = env.pay("4000000000003220")
    assert p["status"] == "requires_action"
    back = sb.submit_challenge(p["next_action"]["redirect_to_url"]["url"], "pass").headers["location"]
    att = p["attempts"][0]["id"]
    deadline = time.monotonic() + 10
    while not (events := [e for e in sb.events() if att in e["body"] and '"success": true' in e["body"]]):
        assert time.monotonic() < deadline, "beta sent no final authorization event"
        time.sleep(0.1)
    sb.set_webhook_url(f"{env.url}/webhooks/psp/beta/")
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def shopper() -> None:
        try:
            barrier.wait()
            httpx.get(back, follow_redirects=False, timeout=30)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def psp() -> None:
        try:
            barrier.wait()
            sb.resend(events[-1]["id"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (shopper, psp) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    env.wait(p["id"], lambda p: p["status"] == "succeeded")
    time.sleep(1.0)
    psp_webhook_process_due()
    assert PaymentEvent.objects.filter(payment_id=p["id"], object_type="payment", to_status="succeeded").count() == 1
    assert journal_list(owner=env.merchant.id).filter(reference__startswith="capture:").count() == 1
    assert pending_eur(env) == 1000 - fee(1000)
    assert_ledger_sound()


def test_an_event_naming_our_attempt_with_another_payments_psp_reference_does_not_settle_it(beta_held):
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
    _row(genuine["eventId"])
    assert env.get(other["id"])["status"] == "succeeded"
    before = pending_eur(env)

    # a correctly signed event naming OUR attempt with the OTHER payment's pspReference
    forged = {**genuine, "eventId": "forged-" + victim_att, "merchantReference": victim_att}
    assert _deliver(env, forged).status_code == 200
    row = _row(forged["eventId"])

    victim_now = Payment.objects.get(pk=victim["id"])
    attempt = PaymentAttempt.objects.get(pk=victim_att)
    assert victim_now.status != "succeeded", (
        f"settled by another payment's authorization: row {row.status} '{row.note}', attempt {attempt.status} "
        f"psp_reference={attempt.psp_reference} (the other's: {genuine['pspReference']}); beta holds for it: "
        f"{sb.payments(victim_att)}"
    )
    assert pending_eur(env) == before, "a capture beta never made was credited to the merchant"


def test_a_signed_refund_event_of_one_connector_does_not_settle_another_connectors_refund(env, monkeypatch):
    """Where a PSP's inquiry cannot confirm its webhooks, its signed events are applied as they say
    — but only to its own operations. The capture/refund lookup took any operation by id, and the
    check that it belongs to the event's connector was made on the inquiry path only: beta's signed
    word settled an alpha refund (succeeded in Payera and the ledger; alpha was about to fail it).
    Now such an event is ignored on both paths; the refund waits for alpha's own answer."""
    from payments.models import Refund

    env.merchant.connectors = ["alpha"]
    env.merchant.save(update_fields=["connectors"])
    env.sandboxes["alpha"].set_webhook_url("")  # alpha's failure of the refund is held back
    monkeypatch.setattr(BetaAdapter, "capabilities",
                        dataclasses.replace(BetaAdapter.capabilities, inquiry_confirms_webhooks=False))
    p = env.pay("4000000000005126")  # approved; any refund fails asynchronously
    assert p["status"] == "succeeded" and p["attempts"][0]["connector"] == "alpha"
    att = PaymentAttempt.objects.get(pk=p["attempts"][0]["id"])
    r = env.post("/v1/refunds", {"payment": p["id"], "amount": 400}, expect=201)
    assert r["status"] == "pending"
    forged = {"eventId": "BE-cross-connector", "eventCode": "REFUND", "success": "true",
              "eventDate": "2026-11-23T00:00:00Z", "amount": {"value": "4.00", "currency": "EUR"},
              "merchantReference": r["id"], "pspReference": "BRX-forged", "paymentReference": att.id,
              "originalReference": att.psp_reference}
    assert _deliver(env, forged).status_code == 200
    row = _row(forged["eventId"])
    assert row.status == InboxStatus.IGNORED and "belongs to alpha" in row.note
    assert Refund.objects.get(pk=r["id"]).status == "pending"
    assert env.get(p["id"])["amount_refunded"] == 0
    assert_ledger_sound()
