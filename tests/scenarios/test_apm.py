"""Alternative payment methods end to end (issue 11): bank redirect and SEPA Direct Debit through
the beta sandbox over real HTTP, with the ledger and the merchant's balance exact after each, the
shopper's return and beta's webhooks converging on one outcome, abandoned redirects expiring by
the scheduler's service, saved SEPA mandates charged off-session, and no full IBAN in any answer,
event, stored webhook or log line (the leak-scan plugin scans the logs of every test)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from ledger.selectors import journal_list
from payera.events.models import Event
from payera.secrets.services import decrypt
from payments.models import Dispute, Payment, PaymentEvent, PaymentMethod, PspWebhook, SepaMandate
from payments.services import payment_expire_redirects, psp_webhook_process_due
from payments.tasks import redirect_expiry_task
from psp_adapters.beta.webhooks import sign
from tests.plugins.leakscan import find_leaks
from tests.scenarios.conftest import assert_ledger_sound, pending_eur

pytestmark = [pytest.mark.scenario]

GOOD, BROKE, RETURNED = "DE89370400440532013000", "AT611904300234573201", "NL39RABO0300065264"
CHARGEBACK_FEE = 1500  # settings.PAYMENTS_CHARGEBACK_FEE["EUR"]


def sepa_fee(gross: int) -> int:  # the `standard` schedule: 0.8 % + 0.20
    return (gross * 80 + 5000) // 10000 + 20


def bank_fee(gross: int) -> int:  # the `standard` schedule: 1.5 % + 0.20
    return (gross * 150 + 5000) // 10000 + 20


def sepa(iban: str = GOOD, **extra) -> dict:
    return {"type": "sepa_debit", "sepa_debit": {"iban": iban, "account_holder_name": "Ada Lovelace"}, **extra}


BANK = {"type": "bank_redirect", "bank_redirect": {"bank": "sandbox_bank"}}


def create(env, data: dict | None = None, *, amount: int = 1500, currency: str = "EUR", expect: int = 201,
           **extra) -> dict:
    body = {"amount": amount, "currency": currency, **extra}
    if data is not None:
        body["payment_method_data"] = data
    r = env.http.post("/v1/payments", json=body)
    assert r.status_code == expect, r.text
    return r.json()


def transitions_to(payment_id: str, status: str) -> int:
    return PaymentEvent.objects.filter(payment_id=payment_id, object_type="payment", to_status=status).count()


def captures(env) -> int:
    return journal_list(owner=env.merchant.id).filter(reference__startswith="capture:").count()


def event_types(env) -> list[str]:
    """The merchant's events, each once per occurrence (sorted: ids are not in time order)."""
    return sorted(Event.objects.filter(merchant_id=env.merchant.id).values_list("type", flat=True))


def wait_for(pred, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition never met"
        psp_webhook_process_due()
        time.sleep(0.1)


def events_of(sb, attempt_id: str, kind: str | None = None) -> list[dict]:
    return [e for e in sb.events() if attempt_id in json.dumps(e) and (kind is None or e["type"] == kind)]


def deliver(env, sb, events: list[dict]) -> None:
    """POST beta's stored webhooks to Payera ourselves, signed as beta signs them, in this order."""
    for e in events:
        body = e["body"].encode()
        r = httpx.post(f"{env.url}/webhooks/psp/beta/", content=body,
                       headers={"Content-Type": "application/json", "Beta-Signature": sign(body, sb.webhook_secret)})
        assert r.status_code == 200, r.text


# --- bank redirect ------------------------------------------------------------------------
def test_bank_redirect_pass_succeeds_once_whether_the_return_or_the_webhook_comes_first(env, held):
    p = create(env, BANK)
    assert p["status"] == "requires_action" and [a["connector"] for a in p["attempts"]] == ["beta"]
    assert p["payment_method"]["bank_redirect"] == {"bank": "sandbox_bank"} and p["payment_method"]["card"] is None
    url = p["next_action"]["redirect_to_url"]["url"]
    assert "/bank/" in url
    env.sandboxes["beta"].submit_challenge(url, "pass")
    # the shopper's return is first: Payera asks beta and records the outcome
    r = httpx.get(f"{env.url}/payments/return/{p['id']}")
    assert r.status_code == 200 and "succeeded" in r.text
    assert env.get(p["id"])["status"] == "succeeded"
    # beta's webhook comes after, three times: nothing changes
    att = p["attempts"][0]["id"]
    wait_for(lambda: events_of(held, att, "authorization"))
    deliver(env, held, events_of(held, att, "authorization") * 3)
    wait_for(lambda: PspWebhook.objects.filter(reference=att).exists())
    time.sleep(0.3)
    psp_webhook_process_due()
    httpx.get(f"{env.url}/payments/return/{p['id']}")  # and the shopper reloads the return page
    p = env.get(p["id"])
    assert (p["status"], p["amount_captured"]) == ("succeeded", 1500)
    assert transitions_to(p["id"], "succeeded") == 1 and captures(env) == 1
    assert pending_eur(env) == 1500 - bank_fee(1500)
    assert event_types(env) == ["payment.captured", "payment.requires_action", "payment.succeeded"]
    assert_ledger_sound()


def test_bank_redirect_webhook_first_then_the_return_changes_nothing(env):
    p = create(env, BANK)
    env.sandboxes["beta"].submit_challenge(p["next_action"]["redirect_to_url"]["url"], "pass")
    p = env.wait(p["id"], lambda p: p["status"] == "succeeded")  # by the webhook
    r = httpx.get(f"{env.url}/payments/return/{p['id']}")
    assert r.status_code == 200 and "succeeded" in r.text
    assert transitions_to(p["id"], "succeeded") == 1 and captures(env) == 1
    assert pending_eur(env) == 1500 - bank_fee(1500)
    assert_ledger_sound()


def test_bank_redirect_fail_fails_without_money(env):
    p = create(env, BANK, return_url="https://shop.example/back?order=7")
    env.sandboxes["beta"].submit_challenge(p["next_action"]["redirect_to_url"]["url"], "fail")
    r = httpx.get(f"{env.url}/payments/return/{p['id']}", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == f"https://shop.example/back?order=7&payment={p['id']}"
    p = env.wait(p["id"], lambda p: p["status"] == "failed")
    assert p["last_error"]["code"] == "payment_declined"
    assert p["last_error"]["decline_code"] == "authentication_failed"
    assert "card" not in p["last_error"]["message"].lower()
    assert captures(env) == 0 and pending_eur(env) == 0
    assert transitions_to(p["id"], "failed") == 1
    assert_ledger_sound()


def test_abandoned_bank_redirect_expires_by_the_scheduler_and_a_late_shopper_cannot_pay(env, settings):
    assert django_settings.CELERY_BEAT_SCHEDULE["payments-redirect-expiry"]["task"] == \
        "payments.tasks.redirect_expiry_task"
    p = create(env, BANK)
    url = p["next_action"]["redirect_to_url"]["url"]
    assert payment_expire_redirects() == []  # not yet: 30 minutes by default
    settings.PAYMENTS_REDIRECT_EXPIRY_SECONDS = 0
    assert redirect_expiry_task() == [p["id"]]  # the scheduler's task (run here in-process)
    p = env.get(p["id"])
    assert p["status"] == "failed" and p["next_action"] is None
    assert p["last_error"]["code"] == "payment_expired" and "expired" in p["last_error"]["message"]
    assert env.sandboxes["beta"].payments(p["attempts"][0]["id"])[0]["state"] == "voided"
    # the shopper comes back to the bank page an hour later and approves: nothing is taken
    env.sandboxes["beta"].submit_challenge(url, "pass")
    httpx.get(f"{env.url}/payments/return/{p['id']}")
    time.sleep(0.5)
    psp_webhook_process_due()
    assert payment_expire_redirects() == []  # once
    p = env.get(p["id"])
    assert p["status"] == "failed" and p["amount_captured"] == 0
    assert captures(env) == 0 and pending_eur(env) == 0
    assert event_types(env) == ["payment.failed", "payment.requires_action"]
    assert_ledger_sound()


def test_expiry_racing_a_shopper_who_just_paid_keeps_the_payment(env, held, settings):
    """The shopper approved at the bank just before the expiry ran (webhook not in yet): beta
    refuses the cancel, and the expiry records what beta says instead of failing the payment."""
    p = create(env, BANK)
    env.sandboxes["beta"].submit_challenge(p["next_action"]["redirect_to_url"]["url"], "pass")
    settings.PAYMENTS_REDIRECT_EXPIRY_SECONDS = 0
    assert payment_expire_redirects() == []
    p = env.get(p["id"])
    assert p["status"] == "succeeded" and captures(env) == 1
    assert pending_eur(env) == 1500 - bank_fee(1500)
    assert_ledger_sound()


# --- SEPA Direct Debit ------------------------------------------------------------------------
def test_sepa_debit_is_processing_until_the_webhook_then_succeeds_with_its_mandate(env, held):
    p = create(env, sepa("de89 3704 0044 0532 0130 00"), mandate_data={
        "customer_acceptance": {"type": "online", "online": {"ip_address": "203.0.113.7",
                                                             "user_agent": "Mozilla/5.0 (shopper)"}}})
    assert p["status"] == "processing" and [a["connector"] for a in p["attempts"]] == ["beta"]
    shown = p["payment_method"]["sepa_debit"]
    mandate = SepaMandate.objects.get(payment_method_id=p["payment_method"]["id"])
    assert shown == {"country": "DE", "last4": "3000", "mandate": mandate.reference, "mandate_status": "active",
                     "mandate_inactive_reason": None}
    assert (mandate.shopper_ip, mandate.shopper_user_agent, mandate.status) == ("203.0.113.7",
                                                                                "Mozilla/5.0 (shopper)", "active")
    assert mandate.signed_at is not None and len(mandate.reference) <= 35
    # beta has settled it, but nothing moves (and nothing posts) before its webhook is in
    att = p["attempts"][0]["id"]
    wait_for(lambda: events_of(held, att, "authorization"))
    assert env.get(p["id"])["status"] == "processing" and captures(env) == 0 and pending_eur(env) == 0
    deliver(env, held, events_of(held, att, "authorization"))
    p = env.wait(p["id"], lambda p: p["status"] == "succeeded")
    assert p["amount_captured"] == 1500
    assert pending_eur(env) == 1500 - sepa_fee(1500)
    assert_ledger_sound()


def test_sepa_debit_insufficient_funds_fails_and_posts_nothing(env):
    p = create(env, sepa(BROKE))
    assert p["status"] == "processing"
    p = env.wait(p["id"], lambda p: p["status"] == "failed")
    assert p["last_error"]["code"] == "payment_declined"
    assert p["last_error"]["decline_code"] == "insufficient_funds"
    assert captures(env) == 0 and pending_eur(env) == 0
    assert_ledger_sound()


def test_sepa_debit_returned_after_success_takes_the_money_back_with_a_dispute(env):
    p = create(env, sepa(RETURNED))
    p = env.wait(p["id"], lambda p: p["status"] == "succeeded")
    assert pending_eur(env) == 1500 - sepa_fee(1500)
    wait_for(lambda: Dispute.objects.filter(payment_id=p["id"]).exists())
    d = Dispute.objects.get(payment_id=p["id"])
    assert (d.reason, d.status, d.amount, d.currency, d.fee) == ("debit_returned", "lost", 1500, "EUR",
                                                                  CHARGEBACK_FEE)
    assert pending_eur(env) == 1500 - sepa_fee(1500) - 1500 - CHARGEBACK_FEE
    p = env.get(p["id"])
    assert p["status"] == "succeeded" and p["amount_disputed"] == 1500
    assert event_types(env) == ["dispute.closed", "dispute.created", "payment.captured", "payment.disputed",
                                "payment.succeeded"]
    created = Event.objects.get(merchant_id=env.merchant.id, type="dispute.created").data["object"]
    assert (created["id"], created["reason"], created["payment"]) == (d.id, "debit_returned", p["id"])
    disputed = Event.objects.get(merchant_id=env.merchant.id, type="payment.disputed").data["object"]
    assert (disputed["id"], disputed["amount_disputed"]) == (p["id"], 1500)
    r = env.http.get(f"/v1/disputes/{d.id}")
    assert r.status_code == 200 and r.json()["reason"] == "debit_returned"
    # the returned money cannot be refunded a second time
    r = env.http.post("/v1/refunds", json={"payment": p["id"]})
    assert r.status_code == 400, r.text
    assert_ledger_sound()


def test_sepa_webhooks_repeated_and_reversed_leave_one_outcome(env, held):
    p = create(env, sepa(RETURNED))
    att = p["attempts"][0]["id"]
    wait_for(lambda: events_of(held, att, "dispute"))  # beta settled it, then the bank returned it
    sent = events_of(held, att)
    assert sorted(e["type"] for e in sent) == ["authorization", "dispute"]
    returned = [e for e in sent if e["type"] == "dispute"]
    deliver(env, held, returned * 3)  # the return first, three times: it waits for the capture
    wait_for(lambda: PspWebhook.objects.filter(reference=att, kind="dispute").exists())
    time.sleep(0.3)
    psp_webhook_process_due()
    assert PspWebhook.objects.get(reference=att, kind="dispute").status == "parked"
    assert not Dispute.objects.filter(payment_id=p["id"]).exists() and pending_eur(env) == 0
    assert env.get(p["id"])["status"] == "processing"
    deliver(env, held, list(reversed(sent)) * 3)  # then everything again, in reverse, three times
    env.wait(p["id"], lambda p: p["status"] == "succeeded")
    # the parked return is retried on its backoff (made due now) and applies once
    PspWebhook.objects.filter(reference=att, kind="dispute").update(next_try_at=timezone.now())
    p = env.wait(p["id"], lambda p: p["amount_disputed"] == 1500)
    assert PspWebhook.objects.filter(reference=att).count() == 2
    time.sleep(0.3)
    psp_webhook_process_due()
    assert transitions_to(p["id"], "succeeded") == 1 and captures(env) == 1
    assert Dispute.objects.filter(payment_id=p["id"]).count() == 1
    assert journal_list(owner=env.merchant.id).filter(reference__startswith="chargeback:").count() == 1
    assert pending_eur(env) == 1500 - sepa_fee(1500) - 1500 - CHARGEBACK_FEE
    assert Event.objects.filter(merchant_id=env.merchant.id, type="dispute.created").count() == 1
    assert_ledger_sound()


def test_saved_sepa_mandate_pays_off_session_through_the_generic_path(env):
    cus = env.post("/v1/customers", {"email": "ada@example.com"}, expect=201)
    first = create(env, sepa(), customer=cus["id"], setup_future_usage="off_session")
    first = env.wait(first["id"], lambda p: p["status"] == "succeeded")
    pm = first["payment_method"]
    assert pm["customer"] == cus["id"] and pm["type"] == "sepa_debit"
    mandate = SepaMandate.objects.get(payment_method_id=pm["id"])
    row = PaymentMethod.objects.get(pk=pm["id"])  # stored encrypted through the secrets backend
    assert GOOD not in row.iban_ciphertext and "0532013000" not in row.iban_ciphertext
    assert decrypt(key=row.pan_key, ciphertext=row.iban_ciphertext).decode() == GOOD  # its own key (shredded at detach)
    assert (row.iban_country, row.iban_last4, row.pan_ciphertext) == ("DE", "3000", "")
    # a merchant-initiated debit later: no IBAN, no shopper; the same mandate is sent to beta
    later = create(env, None, amount=900, customer=cus["id"], payment_method=pm["id"], off_session=True)
    assert later["status"] == "processing" and later["payment_method"]["id"] == pm["id"]
    assert later["payment_method"]["sepa_debit"]["mandate"] == mandate.reference
    later = env.wait(later["id"], lambda p: p["status"] == "succeeded")
    assert Payment.objects.get(pk=later["id"]).off_session is True
    assert SepaMandate.objects.filter(payment_method_id=pm["id"]).count() == 1
    assert pending_eur(env) == 1500 - sepa_fee(1500) + 900 - sepa_fee(900)
    # a revoked mandate debits no more: 400 before any PSP call
    SepaMandate.objects.filter(pk=mandate.pk).update(status="inactive")
    err = create(env, None, amount=900, customer=cus["id"], payment_method=pm["id"], off_session=True, expect=400)
    assert err["error"]["code"] == "mandate_inactive"
    assert_ledger_sound()


# --- what is refused before any PSP call --------------------------------------------------------
def test_alpha_only_merchant_gets_payment_method_unsupported(env):
    env.merchant.connectors = ["alpha"]
    env.merchant.save(update_fields=["connectors"])
    for data in (BANK, sepa()):
        err = create(env, data, expect=400)
        assert err["error"]["code"] == "payment_method_unsupported", err
        assert err["error"]["type"] == "invalid_request_error"
    assert not Payment.objects.filter(merchant=env.merchant).exists()


def test_sepa_and_bank_redirect_outside_eur_are_unsupported(env):
    for data in (BANK, sepa()):
        err = create(env, data, currency="USD", expect=400)
        assert err["error"]["code"] == "payment_method_unsupported"
    assert not Payment.objects.filter(merchant=env.merchant).exists()


@pytest.mark.parametrize(("iban", "code"), [
    ("DE89370400440532013001", "invalid_iban"),  # checksum
    ("DE8937040044053201300", "invalid_iban"),  # length for DE
    ("XX89370400440532013000", "invalid_iban"),  # no such country
    ("BR1800360305000010009795493C1", "iban_not_sepa"),  # a valid IBAN outside the SEPA zone
    ("", "parameter_missing"),
])
def test_bad_iban_is_400_before_any_psp_call_and_never_echoed(env, iban, code):
    err = create(env, sepa(iban), expect=400)
    assert err["error"]["code"] == code and err["error"]["param"] == "payment_method_data[sepa_debit][iban]"
    assert not iban or iban not in json.dumps(err)
    assert not Payment.objects.filter(merchant=env.merchant).exists()
    assert not PaymentMethod.objects.filter(merchant=env.merchant).exists()


@pytest.mark.parametrize(("mandate_data", "param"), [
    ({"customer_acceptance": {"type": "online"}}, "mandate_data[customer_acceptance][online]"),
    ({"customer_acceptance": {"online": {"ip_address": "not-an-ip"}}},
     "mandate_data[customer_acceptance][online][ip_address]"),
    ("yes", "mandate_data[customer_acceptance][online]"),
])
def test_bad_mandate_data_is_400_before_anything_is_written(env, mandate_data, param):
    err = create(env, sepa(), mandate_data=mandate_data, expect=400)
    assert err["error"]["param"] == param
    assert not SepaMandate.objects.filter(merchant=env.merchant).exists()


def test_mandate_without_mandate_data_records_the_requests_ip_and_user_agent(env):
    r = env.http.post("/v1/payments", json={"amount": 500, "currency": "EUR", "payment_method_data": sepa()},
                      headers={"User-Agent": "shop-backend/2.1"})
    assert r.status_code == 201, r.text
    m = SepaMandate.objects.get(payment_method_id=r.json()["payment_method"]["id"])
    assert (m.shopper_ip, m.shopper_user_agent) == ("127.0.0.1", "shop-backend/2.1")


def test_bank_redirect_cannot_be_saved_for_off_session_use(env):
    cus = env.post("/v1/customers", {}, expect=201)
    err = create(env, BANK, customer=cus["id"], setup_future_usage="off_session", expect=400)
    assert err["error"]["param"] == "setup_future_usage"


def test_no_full_iban_in_any_answer_event_or_stored_webhook(env):
    payments = [create(env, sepa(iban)) for iban in (GOOD, BROKE, RETURNED)]
    for p in payments:
        env.wait(p["id"], lambda p: p["status"] in ("succeeded", "failed"))
    wait_for(lambda: Dispute.objects.filter(payment_id=payments[2]["id"]).exists())
    answers = [env.http.get(path).text for path in (
        "/v1/payments?limit=100", "/v1/events?limit=100", "/v1/disputes", "/v1/balance_transactions?limit=100",
        *[f"/v1/payments/{p['id']}" for p in payments])]
    stored = [json.dumps(e.data) for e in Event.objects.filter(merchant_id=env.merchant.id)]
    stored += [w.body + json.dumps(w.headers) for w in PspWebhook.objects.filter(connector="beta")]
    stored += [json.dumps(e.data) for e in PaymentEvent.objects.filter(payment__merchant=env.merchant)]
    stored += [repr(m) + str(m) for m in PaymentMethod.objects.filter(merchant=env.merchant)]
    assert len(stored) > 10
    for text in answers + stored:
        assert find_leaks(text) == [], text[:300]
    assert find_leaks(json.dumps(answers)) == []  # the scan itself sees an IBAN when there is one:
    assert find_leaks(f"x {RETURNED} y") and find_leaks(GOOD.lower())
    # the masked form is what is shown
    assert payments[0]["payment_method"]["sepa_debit"]["last4"] == "3000"


def test_merchant_cancel_of_an_open_bank_redirect_cancels_it_at_the_psp(env):
    p = create(env, BANK)
    url = p["next_action"]["redirect_to_url"]["url"]
    p = env.post(f"/v1/payments/{p['id']}/cancel", {})
    assert p["status"] == "canceled" and p["attempts"][0]["status"] == "voided"
    assert env.sandboxes["beta"].payments(p["attempts"][0]["id"])[0]["state"] == "voided"
    env.sandboxes["beta"].submit_challenge(url, "pass")  # the shopper still approves: nothing is taken
    httpx.get(f"{env.url}/payments/return/{p['id']}")
    time.sleep(0.5)
    psp_webhook_process_due()
    assert env.get(p["id"])["status"] == "canceled"
    assert captures(env) == 0 and pending_eur(env) == 0
    assert event_types(env) == ["payment.canceled", "payment.requires_action"]
    assert_ledger_sound()


def test_merchant_cancel_after_the_shopper_paid_is_refused_and_the_payment_kept(env, held):
    p = create(env, BANK)
    env.sandboxes["beta"].submit_challenge(p["next_action"]["redirect_to_url"]["url"], "pass")
    r = env.http.post(f"/v1/payments/{p['id']}/cancel", json={})
    assert r.status_code == 400 and r.json()["error"]["code"] == "payment_not_cancelable", r.text
    p = env.get(p["id"])
    assert p["status"] == "succeeded" and captures(env) == 1
    assert pending_eur(env) == 1500 - bank_fee(1500)
    assert_ledger_sound()


def test_cancel_during_a_3ds_challenge_cancels_it_at_the_psp(env):
    p = env.pay("4000000000003220")
    assert p["status"] == "requires_action" and p["attempts"][0]["connector"] == "alpha"
    url = p["next_action"]["redirect_to_url"]["url"]
    p = env.post(f"/v1/payments/{p['id']}/cancel", {})
    assert p["status"] == "canceled"
    env.sandboxes["alpha"].submit_challenge(url, "pass")
    httpx.get(f"{env.url}/payments/return/{p['id']}")
    time.sleep(0.3)
    psp_webhook_process_due()
    assert env.get(p["id"])["status"] == "canceled" and captures(env) == 0 and pending_eur(env) == 0
    assert_ledger_sound()


def test_subscription_on_a_saved_sepa_mandate_debits_through_the_generic_off_session_path(env):
    from payments.models import Subscription
    from payments.recurring import add_months
    from payments.services import subscriptions_run

    cus = env.post("/v1/customers", {"email": "sub@example.com"}, expect=201)
    first = create(env, sepa(), customer=cus["id"], setup_future_usage="off_session")
    first = env.wait(first["id"], lambda p: p["status"] == "succeeded")
    pm_id = first["payment_method"]["id"]
    shown = env.http.get(f"/v1/payment_methods/{pm_id}").json()
    assert shown["type"] == "sepa_debit" and shown["reusable"] is True and shown["card"] is None
    assert shown["sepa_debit"]["country"] == "DE" and shown["sepa_debit"]["last4"] == "3000"
    sub = env.post("/v1/subscriptions", {"customer": cus["id"], "payment_method": pm_id, "amount": 700,
                                         "currency": "EUR", "interval": "month"}, expect=201)
    charges = Payment.objects.filter(merchant=env.merchant, off_session=True, payment_method_id=pm_id)
    wait_for(lambda: charges.filter(status="succeeded").count() == 1)
    subscriptions_run(now_=add_months(Subscription.objects.get(pk=sub["id"]).anchor, 1))
    wait_for(lambda: charges.filter(status="succeeded").count() == 2)
    assert all(a.connector == "beta" for p in charges for a in p.attempts.all())
    assert pending_eur(env) == 1500 - sepa_fee(1500) + 2 * (700 - sepa_fee(700))
    assert find_leaks(json.dumps(env.http.get(f"/v1/subscriptions/{sub['id']}").json())) == []
    assert_ledger_sound()
