"""Beta is asynchronous: payments complete through its signed webhooks, stored in the inbox and
applied by the task. Repeats and reordering change nothing; a bad signature is refused."""

from __future__ import annotations

import time

import httpx
import pytest

from ledger.selectors import journal_list
from payera.audit.models import SecurityEvent
from payments.models import InboxStatus, PaymentEvent, PspWebhook
from payments.services import psp_webhook_process_due
from tests.merchants.factories import make_api_key
from tests.scenarios.conftest import assert_ledger_sound, fee, pending_eur

pytestmark = [pytest.mark.scenario]


@pytest.fixture
def beta_env(env):
    env.merchant.connectors = ["beta"]
    env.merchant.save(update_fields=["connectors"])
    return env


def test_beta_payment_succeeds_by_webhook(beta_env):
    env = beta_env
    p = env.pay()
    assert p["status"] == "processing"
    assert p["attempts"][0]["status"] == "pending"
    p = env.wait(p["id"], lambda p: p["status"] == "succeeded")
    assert p["attempts"][0]["status"] == "captured"
    assert pending_eur(env) == 1000 - fee(1000)
    assert_ledger_sound()


def test_beta_hard_decline_by_webhook(beta_env):
    p = beta_env.pay("4000000000009995")
    p = beta_env.wait(p["id"], lambda p: p["status"] == "failed")
    assert p["last_error"]["decline_code"] == "insufficient_funds"


def test_beta_manual_capture_and_refund_complete_by_webhook(beta_env):
    env = beta_env
    p = env.pay(capture_method="manual")
    p = env.wait(p["id"], lambda p: p["status"] == "requires_capture")
    env.post(f"/v1/payments/{p['id']}/capture", {"amount_to_capture": 800})
    p = env.wait(p["id"], lambda p: p["status"] == "succeeded")
    assert p["amount_captured"] == 800
    r = env.post("/v1/refunds", {"payment": p["id"], "amount": 800}, expect=201)
    p = env.wait(p["id"], lambda p: p["amount_refunded"] == 800)
    assert env.http.get(f"/v1/refunds/{r['id']}").json()["status"] == "succeeded"
    assert pending_eur(env) == 0
    assert_ledger_sound()


def test_webhook_delivered_five_times_in_reverse_order_gives_one_transition_and_one_posting(beta_env):
    env = beta_env
    sb = env.sandboxes["beta"]
    sb.set_webhook_url("")  # hold the webhooks: we deliver them ourselves
    try:
        p = env.pay(capture_method="manual")
        att = p["attempts"][0]["id"]
        deadline = time.monotonic() + 10
        while not [e for e in sb.events() if att in str(e)]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        env.post(f"/v1/payments/{p['id']}/capture", {}, expect=None)  # refused: not authorized yet
        sb.set_webhook_url(f"{env.url}/webhooks/psp/beta/")
        events = [e for e in sb.events() if att in str(e)]
        for e in reversed(events * 5):
            sb.resend(e["id"])
        p = env.wait(p["id"], lambda p: p["status"] == "requires_capture")
        time.sleep(0.5)
        psp_webhook_process_due()
        assert PspWebhook.objects.filter(reference=att).count() == len(events)
        moves = PaymentEvent.objects.filter(payment_id=p["id"], object_type="payment",
                                            to_status="requires_capture").count()
        assert moves == 1
        env.post(f"/v1/payments/{p['id']}/capture", {})
        p = env.wait(p["id"], lambda p: p["status"] == "succeeded")
        capture_events = [e for e in sb.events() if "CAPTURE" in str(e) and att in str(e)]
        for e in capture_events * 3:
            sb.resend(e["id"])
        time.sleep(0.5)
        psp_webhook_process_due()
        assert journal_list(owner=env.merchant.id).filter(reference__startswith="capture:").count() == 1
        assert pending_eur(env) == 1000 - fee(1000)
        assert_ledger_sound()
    finally:
        sb.set_webhook_url(f"{env.url}/webhooks/psp/beta/")


def test_bad_signature_is_400_and_recorded(beta_env):
    r = httpx.post(f"{beta_env.url}/webhooks/psp/beta/", content=b'{"eventId": "x"}',
                   headers={"Beta-Signature": "ts=1,sig=00"})
    assert r.status_code == 400
    assert SecurityEvent.objects.filter(kind="psp_webhook", identifier="beta").exists()
    assert not PspWebhook.objects.filter(event_id="x").exists()
    assert httpx.post(f"{beta_env.url}/webhooks/psp/nope/", content=b"{}").status_code == 404


def test_event_for_an_unknown_attempt_is_parked(beta_env):
    import datetime as dt

    from payments.services.webhooks import _inbox_store
    from psp_adapters.port import Outcome, PspEvent, PspEventKind, PspReference

    row = _inbox_store(connector="beta", body=b"{}", event=PspEvent(
        event_id="BE-unknown", kind=PspEventKind.AUTHORIZATION, outcome=Outcome.APPROVED,
        payment=PspReference("att_doesnotexist", "BPX"), amount=100, currency="EUR",
        occurred_at=dt.datetime.now(dt.UTC)))
    psp_webhook_process_due()
    row.refresh_from_db()
    # (a session's real worker may have applied it once already through the on-commit task)
    assert row.status == InboxStatus.PARKED and row.tries >= 1 and row.next_try_at is not None


def test_other_merchant_key_cannot_read_the_payment(beta_env):
    p = beta_env.pay()
    from tests.merchants.factories import MerchantFactory

    other = make_api_key(MerchantFactory())
    r = httpx.get(f"{beta_env.url}/v1/payments/{p['id']}", headers={"Authorization": f"Bearer {other.secret}"})
    assert r.status_code == 404


def _apm(env, data, expect=201):
    r = env.http.post("/v1/payments", json={"amount": 1500, "currency": "EUR", "payment_method_data": data})
    assert r.status_code == expect, r.text
    return r.json()


def test_sepa_debit_settles_by_webhook(env):  # alpha first in the routing: it takes no SEPA, beta does
    p = _apm(env, {"type": "sepa_debit", "sepa_debit": {"iban": "DE89 3704 0044 0532 0130 00",
                                                        "account_holder_name": "Ada"}})
    assert p["status"] == "processing" and [a["connector"] for a in p["attempts"]] == ["beta"]
    p = env.wait(p["id"], lambda p: p["status"] == "succeeded")
    assert p["payment_method"]["type"] == "sepa_debit" and p["payment_method"]["card"] is None
    sepa_fee = (1500 * 80 + 5000) // 10000 + 20
    assert pending_eur(env) == 1500 - sepa_fee
    assert_ledger_sound()


def test_sepa_debit_insufficient_funds_fails(env):
    p = _apm(env, {"type": "sepa_debit", "sepa_debit": {"iban": "AT611904300234573201",
                                                        "account_holder_name": "Ada"}})
    p = env.wait(p["id"], lambda p: p["status"] == "failed")
    assert p["last_error"]["decline_code"] == "insufficient_funds"


def test_bad_iban_is_400(env):
    err = _apm(env, {"type": "sepa_debit", "sepa_debit": {"iban": "DE89370400440532013001",
                                                          "account_holder_name": "Ada"}}, expect=400)
    assert err["error"]["param"] == "payment_method_data[sepa_debit][iban]"


def test_bank_redirect_pass_succeeds(env):
    p = _apm(env, {"type": "bank_redirect", "bank_redirect": {"bank": "sandbox_bank"}})
    assert p["status"] == "requires_action"
    env.sandboxes["beta"].submit_challenge(p["next_action"]["redirect_to_url"]["url"], "pass")
    p = env.wait(p["id"], lambda p: p["status"] == "succeeded")
    assert p["amount_captured"] == 1500


def test_apm_without_a_connector_for_it_is_400(env):
    env.merchant.connectors = ["alpha"]
    env.merchant.save(update_fields=["connectors"])
    err = _apm(env, {"type": "bank_redirect", "bank_redirect": {"bank": "sandbox_bank"}}, expect=400)
    assert err["error"]["code"] == "payment_method_unsupported"
