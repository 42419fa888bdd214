"""Saved cards end to end: a customer-present payment (CIT) keeps, per connector, the PSP's token
and the scheme's network transaction id; merchant-initiated charges (MIT) go to the connector
holding the token, or to another one with the network transaction id; an off-session 3-D Secure
challenge fails `authentication_required` with an event."""

from __future__ import annotations

import pytest

from payera.events.models import Event
from payments.models import PaymentMethodCredential
from tests.scenarios.conftest import assert_ledger_sound
from tests.scenarios.test_card_table import _challenge

pytestmark = [pytest.mark.scenario]


def _customer(env) -> str:
    return env.post("/v1/customers", {"email": "saver@example.com"}, expect=201)["id"]


def _cit(env, number="4242424242424242", **extra):
    cus = _customer(env)
    p = env.pay(number, customer=cus, setup_future_usage="off_session", **extra)
    return cus, p


def _mit(env, cus, pm, expect=201, **extra):
    r = env.http.post("/v1/payments", json={"amount": 700, "currency": "EUR", "customer": cus,
                                             "payment_method": pm, "off_session": True, **extra})
    assert r.status_code == expect, r.text
    return r.json()


def test_cit_keeps_the_token_and_network_transaction_id_of_its_connector(env):
    cus, p = _cit(env)
    assert p["status"] == "succeeded"
    (cred,) = PaymentMethodCredential.objects.filter(payment_method_id=p["payment_method"]["id"])
    (row,) = env.sandboxes["alpha"].payments(p["attempts"][0]["id"])
    assert cred.connector == "alpha"
    assert cred.psp_token == row["token"] and cred.psp_token.startswith("tok_")
    assert cred.network_transaction_id == row["network_transaction_id"] and cred.network_transaction_id


def test_mit_goes_to_the_token_holder_flagged_merchant_initiated(env):
    cus, p = _cit(env)
    cit_row = env.sandboxes["alpha"].payments(p["attempts"][0]["id"])[0]
    m = _mit(env, cus, p["payment_method"]["id"])
    assert m["status"] == "succeeded" and [a["connector"] for a in m["attempts"]] == ["alpha"]
    (row,) = env.sandboxes["alpha"].payments(m["attempts"][0]["id"])
    assert row["off_session"] == 1  # flagged MIT
    assert row["token"] == cit_row["token"]  # charged with the PSP's token, not the card number
    assert row["network_transaction_id"] == cit_row["network_transaction_id"]  # names the CIT


def test_mit_goes_to_another_connector_with_the_network_transaction_id_when_the_token_holder_is_down(env):
    cus, p = _cit(env)
    cit_row = env.sandboxes["alpha"].payments(p["attempts"][0]["id"])[0]
    m = _mit(env, cus, p["payment_method"]["id"], metadata={"sandbox_fail_alpha": "503"})
    m = env.wait(m["id"], lambda x: x["status"] == "succeeded")
    assert [(a["connector"], a["status"]) for a in m["attempts"]] == [("alpha", "failed"), ("beta", "captured")]
    (row,) = env.sandboxes["beta"].payments(m["attempts"][1]["id"])
    assert row["off_session"] == 1 and row["token"] is None  # beta holds no token: the card itself
    assert row["card_last4"] == "4242"
    assert row["network_transaction_id"] == cit_row["network_transaction_id"]
    assert_ledger_sound()


def test_card_saved_on_beta_is_charged_on_beta_first(env):
    cus, p = _cit(env, metadata={"sandbox_fail_alpha": "503"})
    p = env.wait(p["id"], lambda x: x["status"] == "succeeded")
    pm_id = p["payment_method"]["id"]
    creds = {c.connector: c for c in PaymentMethodCredential.objects.filter(payment_method_id=pm_id)}
    assert set(creds) == {"beta"} and creds["beta"].psp_token and creds["beta"].network_transaction_id
    m = _mit(env, cus, p["payment_method"]["id"])
    m = env.wait(m["id"], lambda x: x["status"] == "succeeded")
    assert [a["connector"] for a in m["attempts"]] == ["beta"]  # the token holder, though alpha routes first
    (row,) = env.sandboxes["beta"].payments(m["attempts"][0]["id"])
    assert row["token"] == creds["beta"].psp_token and row["off_session"] == 1


def test_3ds_card_off_session_fails_authentication_required_and_tells_the_merchant(env):
    cus = _customer(env)
    p = env.pay("4000000000003220", customer=cus, setup_future_usage="off_session",
                return_url="https://shop.example/done")
    _challenge(env, p, "pass")
    p = env.wait(p["id"], lambda x: x["status"] == "succeeded")
    m = _mit(env, cus, p["payment_method"]["id"])
    assert m["status"] == "failed"
    assert m["last_error"]["decline_code"] == "authentication_required"
    assert len(m["attempts"]) == 1  # another connector would ask the same: no cascade
    types = set(Event.objects.filter(merchant_id=env.merchant.id, data__object__id=m["id"])
                .values_list("type", flat=True))
    assert {"payment.failed", "payment.authentication_required"} <= types


def test_off_session_needs_a_saved_payment_method(env):
    cus = _customer(env)
    r = env.http.post("/v1/payments", json={
        "amount": 500, "currency": "EUR", "customer": cus, "off_session": True,
        "payment_method_data": {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                                          "exp_year": 2034, "cvc": "123"}}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "off_session"


def test_card_whose_cit_was_declined_cannot_be_charged_off_session(env):
    cus, p = _cit(env, "4000000000000002")
    assert p["status"] == "failed"
    r = env.http.post("/v1/payments", json={"amount": 500, "currency": "EUR", "customer": cus,
                                            "payment_method": p["payment_method"]["id"], "off_session": True})
    assert r.status_code == 400 and r.json()["error"]["code"] == "payment_method_not_reusable"


# --- fingerprints and detaching ----------------------------------------------------------
def test_fingerprint_shows_the_same_card_saved_twice(env):
    cus, a = _cit(env)
    b = env.pay("4242424242424242", customer=cus, setup_future_usage="off_session", amount=200)
    c = env.pay("5555555555554444", customer=cus, setup_future_usage="off_session", amount=300)
    pa, pb, pc = (env.http.get(f"/v1/payment_methods/{p['payment_method']['id']}").json() for p in (a, b, c))
    assert pa["object"] == "payment_method" and pa["card"]["last4"] == "4242" and pa["reusable"] is True
    assert pa["fingerprint"] and pa["fingerprint"] == pb["fingerprint"] != pc["fingerprint"]
    dupes = env.http.get(f"/v1/customers/{cus}/payment_methods", params={"fingerprint": pa["fingerprint"]}).json()
    assert {m["id"] for m in dupes["data"]} == {pa["id"], pb["id"]}
    assert len(env.http.get(f"/v1/customers/{cus}/payment_methods").json()["data"]) == 3


def test_fingerprints_do_not_match_across_merchants(env):
    from payments.models import PaymentMethod
    from payments.serializers_recurring import public_fingerprint
    from payments.services import customer_create, payment_create
    from tests.merchants.factories import MerchantFactory

    _, p = _cit(env)
    other = MerchantFactory(connectors=["alpha"])
    cus = customer_create(merchant=other)
    card = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    q = payment_create(merchant=other, amount=100, currency="EUR", payment_method_data=card, customer=cus.id,
                       setup_future_usage="off_session")
    mine, theirs = PaymentMethod.objects.get(pk=p["payment_method"]["id"]), q.payment_method
    assert mine.fingerprint == theirs.fingerprint  # the same card number…
    assert public_fingerprint(mine) != public_fingerprint(theirs)  # …is not linkable across merchants


def test_detach_crypto_shreds_the_card_number_and_a_later_charge_is_400(env):
    from payera.secrets.services import CiphertextInvalidError, decrypt
    from payments.models import PaymentMethod

    cus, p = _cit(env)
    pm_id = p["payment_method"]["id"]
    before = PaymentMethod.objects.get(pk=pm_id)
    assert before.pan_key.startswith("pan-")  # a saved card has a key of its own
    assert decrypt(key=before.pan_key, ciphertext=before.pan_ciphertext) == b"4242424242424242"
    sub = env.post("/v1/subscriptions", {"customer": cus, "payment_method": pm_id, "amount": 900,
                                         "currency": "EUR", "interval": "month"}, expect=201)
    in_use = env.post(f"/v1/payment_methods/{pm_id}/detach", expect=400)  # a live subscription charges it
    assert in_use["error"]["code"] == "payment_method_in_use" and sub["id"] in in_use["error"]["message"]
    env.post(f"/v1/subscriptions/{sub['id']}/cancel")
    done = env.post(f"/v1/payment_methods/{pm_id}/detach")
    assert done["detached"] and done["card"] == {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034}
    assert done["reusable"] is False and done["fingerprint"]
    after = PaymentMethod.objects.get(pk=pm_id)
    assert after.pan_ciphertext == "" and not after.credentials.exists()
    with pytest.raises(CiphertextInvalidError):  # the backend's key is gone: no copy can be read
        decrypt(key=before.pan_key, ciphertext=before.pan_ciphertext)
    assert env.post(f"/v1/payment_methods/{pm_id}/detach")["detached"] == done["detached"]  # twice: the same
    r = env.http.post("/v1/payments", json={"amount": 500, "currency": "EUR", "customer": cus,
                                            "payment_method": pm_id, "off_session": True})
    assert r.status_code == 400 and r.json()["error"]["code"] == "payment_method_detached"
    assert r.json()["error"]["param"] == "payment_method"
    assert env.http.get(f"/v1/customers/{cus}/payment_methods").json()["data"] == []
    r = env.http.post("/v1/subscriptions", json={"customer": cus, "payment_method": pm_id, "amount": 900,
                                                 "currency": "EUR", "interval": "month"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "payment_method_detached"
    assert Event.objects.filter(type="payment_method.detached", data__object__id=pm_id).count() == 1
