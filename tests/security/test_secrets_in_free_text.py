"""Payera's own secrets (API keys, webhook signing secrets, Vault tokens) typed or pasted into text
that is kept and shown — a log line, a staff member's reason for an action — are masked whole."""

from __future__ import annotations

import logging

import pytest

from payera.core.logging import MaskingFilter, MaskingFormatter
from payera.events.services import webhook_endpoint_create
from tests.backoffice.leaks import leaks
from tests.backoffice.staff import make_staff, otp_force_login
from tests.merchants.factories import MerchantFactory, make_api_key

pytestmark = pytest.mark.django_db


def _signing_secret_with_a_dash_or_underscore(merchant) -> str:
    """A real signing secret (`whsec_` + token_urlsafe: three in four hold `-` or `_`)."""
    for _ in range(50):
        secret = webhook_endpoint_create(
            merchant_id=merchant.pk, url="http://127.0.0.1:9/hook", enabled_events=["*"]
        ).secret
        if "-" in secret[6:] or "_" in secret[6:]:
            return secret
    raise AssertionError("token_urlsafe never gave a - or _")


def _pieces(secret: str, size: int = 8) -> list[str]:
    body = secret.split("_", 1)[1] if secret.startswith("whsec_") else secret[8:]
    return [body[i : i + size] for i in range(0, len(body) - size + 1)]


def test_a_webhook_signing_secret_in_a_log_line_is_masked_whole():
    """Was: the log masking took a webhook secret to end at its first `-` or `_` (it matched
    `whsec_[A-Za-z0-9]+`), while signing secrets are `whsec_` + token_urlsafe (`-` and `_`
    included): "whsec_Ab3-XyZ…" came out as "whsec_***-XyZ…", most of the secret in clear, in
    three secrets out of four. Now a secret token is masked up to its last url-safe character."""
    secret = _signing_secret_with_a_dash_or_underscore(MerchantFactory())
    record = logging.LogRecord(
        "payera.events", logging.WARNING, __file__, 1, "rolled %s for the merchant", (secret,), None
    )
    MaskingFilter().filter(record)
    line = MaskingFormatter("%(message)s").format(record)
    assert "whsec_***" in line
    assert not [piece for piece in _pieces(secret) if piece in line], line


def test_secrets_in_a_staff_reason_are_never_stored_or_shown(client):
    """Was: staff free text (the reason of every back-office action, refund approvals' notes,
    discrepancies' reasons) was masked for card numbers and IBANs only, so a merchant's live API
    key or webhook secret pasted into a reason ("key sk_test_… leaked, see ticket") was kept in
    the append-only action log and shown on its admin page. Now secret tokens are masked there
    too (`sk_test_***`, `whsec_***`); card numbers and IBANs as before, the rest of the text kept."""
    from payera.backoffice.models import StaffAction
    from payera.merchants.models import ApiKey

    merchant, other = MerchantFactory(), MerchantFactory()
    revoked, live = make_api_key(merchant), make_api_key(other)
    secret = _signing_secret_with_a_dash_or_underscore(other)
    reason = f"ticket 4711: keys {revoked.secret} and {live.secret} leaked, also {secret}, card 4111111111111111"
    otp_force_login(client, make_staff("root", superuser=True))
    client.post(
        "/admin/merchants/apikey/",
        {"action": "revoke", "_selected_action": [revoked.api_key.pk], "confirm": "yes", "reason": reason},
    )
    assert ApiKey.objects.get(pk=revoked.api_key.pk).revoked_at is not None
    action = StaffAction.objects.get()
    assert action.reason.startswith("ticket 4711: keys sk_test_*** and sk_test_*** leaked, also whsec_***, card 411111")
    known = (revoked.secret, live.secret, secret, *_pieces(secret), *_pieces(live.secret))
    assert leaks(action.reason, known_secrets=known) == [], action.reason
    page = client.get(f"/admin/backoffice/staffaction/{action.pk}/change/").content.decode()
    assert "ticket 4711" in page and leaks(page, known_secrets=known) == []
