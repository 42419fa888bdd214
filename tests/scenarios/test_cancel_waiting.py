"""Canceling a payment while the shopper is at 3-D Secure (issue 5): Payera voids the waiting
attempt at the PSP, so the shopper can no longer complete it there and no money moves; a cancel
that loses the race to the shopper never hides the capture that happened."""

from __future__ import annotations

import pytest

from payments.models import AS, PaymentAttempt
from payments.services import recovery_run
from tests.scenarios.conftest import assert_ledger_sound, fee, pending_eur

pytestmark = [pytest.mark.scenario]


@pytest.mark.parametrize("connector", ["alpha", "beta"])
def test_cancel_at_3ds_voids_at_the_psp_and_the_challenge_can_no_longer_be_completed(env, connector):
    env.merchant.connectors = [connector]
    env.merchant.save(update_fields=["connectors"])
    p = env.pay("4000000000003220")
    p = env.wait(p["id"], lambda p: p["status"] == "requires_action")
    url = p["next_action"]["redirect_to_url"]["url"]
    att = p["attempts"][0]["id"]
    p = env.post(f"/v1/payments/{p['id']}/cancel", {})
    assert p["status"] == "canceled"
    assert PaymentAttempt.objects.get(pk=att).status == AS.VOIDED
    [held] = env.sandboxes[connector].payments(att)
    assert held["state"] == "voided"
    # the shopper comes back to the challenge afterwards: nothing can be authorized any more
    env.sandboxes[connector].submit_challenge(url, "pass")
    assert env.sandboxes[connector].payments(att)[0]["state"] == "voided"
    recovery_run(force=True)
    p = env.get(p["id"])
    assert p["status"] == "canceled" and p["amount_captured"] == 0
    assert pending_eur(env) == 0
    assert_ledger_sound()


def test_a_cancel_that_loses_the_race_to_the_shopper_shows_the_capture_not_a_cancel(env):
    env.merchant.connectors = ["alpha"]
    env.merchant.save(update_fields=["connectors"])
    sb = env.sandboxes["alpha"]
    sb.set_webhook_url("")  # the PSP's webhook is late: Payera still believes the shopper is away
    try:
        p = env.pay("4000000000003220")
        assert p["status"] == "requires_action"
        sb.submit_challenge(p["next_action"]["redirect_to_url"]["url"], "pass")  # captured at alpha
        r = env.http.post(f"/v1/payments/{p['id']}/cancel", json={})
        assert r.status_code >= 400 and "secret" not in r.text
        p = env.get(p["id"])
        assert p["status"] == "succeeded" and p["amount_captured"] == 1000  # the truth, at once
        assert pending_eur(env) == 1000 - fee(1000)
        assert_ledger_sound()
    finally:
        sb.set_webhook_url(f"{env.url}/webhooks/psp/alpha/")


def test_a_payment_never_sent_is_canceled_without_asking_a_psp(env):
    p = env.pay(confirm=False)
    assert p["status"] == "requires_confirmation"
    p = env.post(f"/v1/payments/{p['id']}/cancel", {})
    assert p["status"] == "canceled" and p["attempts"] == []
