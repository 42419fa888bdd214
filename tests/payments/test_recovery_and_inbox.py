"""Recovery of a crash between the committed attempt and the PSP call; webhook idempotency."""

from __future__ import annotations

import datetime as dt

import pytest

from payments.models import AS, PS, Payment, PaymentAttempt
from payments.services import payment_create, recovery_run
from payments.services.payments import _confirm_begin
from tests.merchants.factories import MerchantFactory

pytestmark = [pytest.mark.django_db]

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def test_attempt_that_never_reached_the_psp_fails_after_the_grace_period(psp_settings):
    merchant = MerchantFactory(connectors=["alpha", "beta"])
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD, confirm=False)
    # the claim commits the first attempt; then the process "dies" before the PSP call
    _plan, attempt = _confirm_begin(merchant=merchant, payment_id=payment.id, actor="test")
    assert recovery_run(force=True)["attempts"] == 0  # within its grace: its call may be running
    PaymentAttempt.objects.filter(pk=attempt.pk).update(created_at=attempt.created_at - dt.timedelta(minutes=5))
    recovery_run(force=True)
    attempt = PaymentAttempt.objects.get(pk=attempt.pk)
    payment = Payment.objects.get(pk=payment.id)
    assert attempt.status == AS.FAILED
    assert payment.status == PS.FAILED and payment.inflight == ""
    assert psp_settings["alpha"].payments(attempt.id) == []


def test_payment_create_with_confirm_false_waits(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"])
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD, confirm=False)
    assert payment.status == PS.REQUIRES_CONFIRMATION and not payment.attempts.exists()
    assert "4242424242424242" not in payment.payment_method.pan_ciphertext
    assert payment.payment_method.card_bin == "424242"
