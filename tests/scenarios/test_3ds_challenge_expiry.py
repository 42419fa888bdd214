"""An abandoned 3-D Secure challenge expires like an abandoned bank page.

What was wrong: `payment_expire_redirects` (the scheduler's `redirect_expiry_task`) only looked at
payments whose method type is a redirect type (bank redirect). A card payment whose shopper left
during the 3-D Secure challenge stayed `requires_action` for ever: recovery asked the PSP on its
schedule and got "still requires_action" every time, the stuck sweeper flagged it for a human
every hour (runbooks/stuck-items.md says "abandoned redirects expire on their own schedule"), the
merchant never got `payment.failed`, and the shopper could come back days later, pass the
challenge and be charged for an order the merchant had given up on. Now an abandoned challenge is
canceled at the PSP and the payment fails with `payment_expired` after
PAYMENTS_REDIRECT_EXPIRY_SECONDS, as a bank redirect does; a booking's payment is still left to
the booking's own `hold_expires_at`.
"""

from __future__ import annotations

import datetime as dt
import time

import httpx
import pytest
from django.utils import timezone

from payments.models import PaymentAttempt
from payments.services import payment_expire_redirects, psp_webhook_process_due
from tests.scenarios.conftest import assert_ledger_sound, pending_eur

pytestmark = [pytest.mark.scenario]

CHALLENGE = "4000000000003220"


def test_abandoned_3ds_challenge_expires_and_a_late_shopper_cannot_pay(env, settings):
    p = env.pay(CHALLENGE)
    assert p["status"] == "requires_action"
    attempt_id = p["attempts"][0]["id"]
    url = p["next_action"]["redirect_to_url"]["url"]
    assert payment_expire_redirects() == []  # not yet: 30 minutes by default
    PaymentAttempt.objects.filter(pk=attempt_id).update(created_at=timezone.now() - dt.timedelta(hours=2))

    assert payment_expire_redirects() == [p["id"]]

    p = env.get(p["id"])
    assert p["status"] == "failed" and p["next_action"] is None
    assert p["last_error"]["code"] == "payment_expired"
    assert "3-D Secure" in p["last_error"]["message"]
    assert env.sandboxes["alpha"].payments(attempt_id)[0]["state"] == "voided"
    # the shopper comes back the next day and passes the challenge: nothing is taken
    env.sandboxes["alpha"].submit_challenge(url, "pass")
    httpx.get(f"{env.url}/payments/return/{p['id']}")
    time.sleep(0.3)
    psp_webhook_process_due()
    assert payment_expire_redirects() == []  # once
    p = env.get(p["id"])
    assert p["status"] == "failed" and p["amount_captured"] == 0
    assert env.sandboxes["alpha"].payments(attempt_id)[0]["state"] == "voided"
    assert pending_eur(env) == 0
    assert_ledger_sound()


def test_a_3ds_challenge_passed_just_before_the_expiry_keeps_the_payment(env):
    """The shopper passed the challenge a moment before the expiry ran (the return not in yet):
    the PSP refuses the cancel and the expiry records what it says instead of failing it."""
    p = env.pay(CHALLENGE)
    env.sandboxes["alpha"].submit_challenge(p["next_action"]["redirect_to_url"]["url"], "pass")
    PaymentAttempt.objects.filter(pk=p["attempts"][0]["id"]).update(created_at=timezone.now() - dt.timedelta(hours=2))

    assert payment_expire_redirects() == []

    p = env.get(p["id"])
    assert p["status"] == "succeeded" and p["amount_captured"] == 1000
    assert_ledger_sound()


def test_a_bookings_3ds_wait_is_left_to_the_bookings_own_expiry(env):
    from payments.services.bookings import booking_create

    booking = booking_create(
        merchant=env.merchant, amount=1000, currency="EUR", reference="3ds-hold",
        hold_expires_at=(timezone.now() + dt.timedelta(days=2)).isoformat(),
        payment_method_data={"type": "card", "card": {"number": CHALLENGE, "exp_month": 12, "exp_year": 2034,
                                                      "cvc": "123"}},
    )  # fmt: skip
    assert booking.payment.status == "requires_action"
    PaymentAttempt.objects.filter(payment_id=booking.payment_id).update(
        created_at=timezone.now() - dt.timedelta(hours=2)
    )
    assert payment_expire_redirects() == []
    booking.refresh_from_db()
    assert booking.status == "pending" and booking.payment.status == "requires_action"
