"""Session 13's review: an abandoned bank redirect whose expiry void TIMES OUT (beta voided it, the answer
was lost) ends `canceled` with `payment.canceled` instead of the contract's `failed` with
`last_error.code = "payment_expired"` and `payment.failed` (docs/payments.md, "An abandoned
redirect expires"). `redirect_expire` (payments/services/redirects.py) hands a void error to
`attempt_recover`, whose VOIDED branch in `apply_authorization` (payments/services/payments.py)
cancels the payment as if the merchant had asked; `payment_expire_redirects` did not even count it.
Now the expiry asks the PSP after a timed-out void: voided means the redirect expired."""

from __future__ import annotations

import httpx
import pytest

from payera.events.models import Event
from payments.services import payment_expire_redirects

pytestmark = [pytest.mark.scenario]

BANK = {"type": "bank_redirect", "bank_redirect": {"bank": "sandbox_bank"}}


def _chaos(sb, chaos: dict) -> None:
    httpx.put(sb.url + "/_sandbox/config", headers=sb._auth(), json={"chaos": chaos}).raise_for_status()


def test_an_expiry_whose_void_timed_out_still_fails_the_payment_as_expired(env, settings):
    sb = env.sandboxes["beta"]
    r = env.http.post("/v1/payments", json={"amount": 1500, "currency": "EUR", "payment_method_data": BANK})
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["status"] == "requires_action"
    settings.PAYMENTS_REDIRECT_EXPIRY_SECONDS = 0
    _chaos(sb, {"timeout_rate": 1, "timeout_seconds": 3})  # POSTs held past the 1.5 s read timeout
    try:
        expired = payment_expire_redirects()
    finally:
        _chaos(sb, {})
    assert sb.payments(p["attempts"][0]["id"])[0]["state"] == "voided"  # beta did cancel it
    p = env.get(p["id"])
    types = sorted(Event.objects.filter(merchant_id=env.merchant.id).values_list("type", flat=True))
    assert (p["status"], (p["last_error"] or {}).get("code"), types, expired) == (
        "failed",
        "payment_expired",
        ["payment.failed", "payment.requires_action"],
        [p["id"]],
    )
