"""Every row of the contract's card table, through the API, the sandboxes and the ledger."""

from __future__ import annotations

import pytest

from tests.scenarios.conftest import assert_ledger_sound, fee, pending_eur

pytestmark = [pytest.mark.scenario]


def test_approved_card_succeeds_on_alpha_and_posts_gross_less_fee(env):
    p = env.pay("4242424242424242")
    assert p["status"] == "succeeded", p
    assert p["amount_captured"] == 1000 and p["amount_capturable"] == 0
    assert [a["connector"] for a in p["attempts"]] == ["alpha"]
    assert p["payment_method"]["card"] == {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034}
    assert pending_eur(env) == 1000 - fee(1000)
    assert_ledger_sound()
    assert len(env.sandboxes["alpha"].payments(p["attempts"][0]["id"])) == 1


def test_mastercard_approved(env):
    p = env.pay("5555555555554444")
    assert p["status"] == "succeeded"
    assert p["payment_method"]["card"]["brand"] == "mastercard"


@pytest.mark.parametrize(
    ("number", "code"),
    [("4000000000000002", "generic_decline"), ("4000000000009995", "insufficient_funds"),
     ("4000000000000069", "expired_card")],
)
def test_hard_decline_stops_after_one_attempt(env, number, code):
    p = env.pay(number)
    assert p["status"] == "failed"
    assert p["last_error"]["code"] == "card_declined"
    assert p["last_error"]["decline_code"] == code
    assert len(p["attempts"]) == 1 and p["attempts"][0]["decline_code"] == code
    assert pending_eur(env) == 0
    assert_ledger_sound()


def test_processing_error_cascades_alpha_to_beta_with_two_attempts(env):
    p = env.pay("4000000000000119")
    p = env.wait(p["id"], lambda p: p["status"] == "succeeded")
    assert [(a["connector"], a["status"]) for a in p["attempts"]] == [("alpha", "declined"), ("beta", "captured")]
    assert p["attempts"][0]["decline_code"] == "processing_error"
    assert pending_eur(env) == 1000 - fee(1000)
    assert_ledger_sound()


def test_alpha_unavailable_cascades_to_beta(env):
    p = env.pay(metadata={"sandbox_fail_alpha": "503"})
    p = env.wait(p["id"], lambda p: p["status"] == "succeeded")
    assert [(a["connector"], a["status"]) for a in p["attempts"]] == [("alpha", "failed"), ("beta", "captured")]


def _challenge(env, p, result):
    assert p["status"] == "requires_action"
    url = p["next_action"]["redirect_to_url"]["url"]
    answer = env.sandboxes[p["attempts"][-1]["connector"]].submit_challenge(url, result)
    assert answer.status_code in (302, 303)
    return answer.headers["location"]


@pytest.mark.parametrize("via", ["return", "webhook"])
def test_3ds_pass_succeeds_once(env, via):
    p = env.pay("4000000000003220", return_url="https://shop.example/done")
    back = _challenge(env, p, "pass")
    assert back.startswith(env.url + "/payments/return/" + p["id"])
    if via == "return":
        import httpx

        r = httpx.get(back, follow_redirects=False)
        assert r.status_code == 302 and r.headers["location"].startswith("https://shop.example/done?payment=")
    p = env.wait(p["id"], lambda p: p["status"] == "succeeded")
    # the other path arrives too and changes nothing: one transition, one posting
    if via == "webhook":
        import httpx

        httpx.get(back, follow_redirects=False)
    env.wait(p["id"], lambda p: p["status"] == "succeeded")
    assert pending_eur(env) == 1000 - fee(1000)
    assert_ledger_sound()


def test_3ds_fail_fails(env):
    p = env.pay("4000000000003220")
    _challenge(env, p, "fail")
    p = env.wait(p["id"], lambda p: p["status"] == "failed")
    assert p["last_error"]["decline_code"] == "authentication_failed"
    assert pending_eur(env) == 0


def test_3ds_passed_then_declined(env):
    p = env.pay("4000008400001629")
    _challenge(env, p, "pass")
    p = env.wait(p["id"], lambda p: p["status"] == "failed")
    assert p["last_error"]["decline_code"] == "generic_decline"


def test_timeout_on_alpha_never_tries_beta_and_recovery_settles_it(env):
    from payments.services import recovery_run

    p = env.pay("4000000000007726")
    assert p["status"] == "processing"
    assert [(a["connector"], a["status"]) for a in p["attempts"]] == [("alpha", "unknown")]
    assert pending_eur(env) == 0
    recovery_run(force=True)
    p = env.get(p["id"])
    assert p["status"] == "succeeded"
    assert [a["connector"] for a in p["attempts"]] == ["alpha"]
    att = p["attempts"][0]["id"]
    assert len(env.sandboxes["alpha"].payments(att)) == 1
    assert env.sandboxes["beta"].payments(att) == []
    assert pending_eur(env) == 1000 - fee(1000)
    recovery_run(force=True)  # again: nothing changes
    assert pending_eur(env) == 1000 - fee(1000)
    assert_ledger_sound()


def test_dispute_card_is_approved(env):
    p = env.pay("4000000000000259")
    assert p["status"] == "succeeded"


def test_off_session_card_approved_with_shopper_present(env):
    p = env.pay("4000000000000341")
    assert p["status"] == "succeeded"


def test_refund_fail_card_is_approved(env):
    p = env.pay("4000000000005126")
    assert p["status"] == "succeeded"


def _save_card(env, number):
    cus = env.post("/v1/customers", {"email": "a@example.com"}, expect=201)["id"]
    p = env.pay(number, customer=cus, setup_future_usage="off_session")
    assert p["status"] == "succeeded"
    assert p["payment_method"]["customer"] == cus
    return cus, p["payment_method"]["id"]


def test_saved_card_charged_off_session(env):
    cus, pm = _save_card(env, "4242424242424242")
    p = env.post("/v1/payments", {"amount": 500, "currency": "EUR", "customer": cus, "payment_method": pm,
                                  "off_session": True}, expect=201)
    assert p["status"] == "succeeded" and p["payment_method"]["id"] == pm


def test_off_session_decline_card_declines_without_the_shopper(env):
    cus, pm = _save_card(env, "4000000000000341")
    p = env.post("/v1/payments", {"amount": 500, "currency": "EUR", "customer": cus, "payment_method": pm,
                                  "off_session": True}, expect=201)
    assert p["status"] == "failed"
    assert p["last_error"]["decline_code"] == "insufficient_funds"
    assert len(p["attempts"]) == 1


def test_saved_card_of_another_customer_is_404(env):
    _cus, pm = _save_card(env, "4242424242424242")
    other = env.post("/v1/customers", {}, expect=201)["id"]
    r = env.http.post("/v1/payments", json={"amount": 500, "currency": "EUR", "customer": other,
                                            "payment_method": pm, "off_session": True})
    assert r.status_code == 404 and r.json()["error"]["param"] == "payment_method"


def test_dispute_webhook_after_capture_is_stored(env):
    import time

    from payments.models import PspWebhook
    from payments.services import psp_webhook_process_due

    p = env.pay("4000000000000259")
    att = p["attempts"][0]["id"]
    for _ in range(50):
        if PspWebhook.objects.filter(reference=att, kind="dispute").exists():
            break
        time.sleep(0.1)
    psp_webhook_process_due()
    row = PspWebhook.objects.get(reference=att, kind="dispute")
    assert row.status == "processed" and row.note == "dispute: created (confirmed by inquiry: needs_response)"
    from payments.models import Dispute

    assert Dispute.objects.filter(payment_id=p["id"]).count() == 1
    assert env.get(p["id"])["status"] == "succeeded"
