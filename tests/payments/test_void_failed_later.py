"""A cancel whose void the PSP answered `pending` and refused later.

An asynchronous PSP (beta; Adyen's "cancel-received") answers a void "received" and tells its
outcome later, by webhook or inquiry. Payera took that answer for the void itself: the attempt
`voided`, the payment `canceled` and `payment.canceled` sent at once. When the PSP then reported
the void failed, the news was ignored ("voids are recorded from the answer"): the merchant had been
told the payment was canceled (and e.g. released the goods as unpaid), while the PSP still held
the shopper's authorization — a hold nobody would ever capture or void again (Payera's expiry
skips canceled payments), and the payment could no longer be captured from Payera.

Now a void answered `pending` is a cancel under way, as a capture answered `pending` is: the
payment stays `requires_capture` with its `cancel` claim until the PSP says. Voided (webhook or
recovery's inquiry) → `canceled` and `payment.canceled`; refused → the claim is released, the
payment is `requires_capture` (still authorized at the PSP: capture it or cancel again) and the
merchant gets `payment.cancel_failed`. Nothing is posted either way (an authorization has no
journal).

The refusing PSP is a stand-in for alpha (its wire format) that answers a void pending and lists
it failed; the accepting one is the real beta sandbox.
"""

from __future__ import annotations

import time

import pytest

from ledger.models import Journal
from payera.events.models import Event
from payments.models import AS, PS, Payment
from payments.services import payment_cancel, payment_capture, payment_create, recovery_run
from payments.services.webhooks import psp_webhook_process
from tests.helpers import event_types
from tests.merchants.factories import MerchantFactory
from tests.payments.standin_alpha import alpha_webhook, authorized_at_standin
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def _cancel_under_way(merchant, payment) -> None:
    answered = payment_cancel(merchant=merchant, payment_id=payment.id)
    assert answered.status == PS.REQUIRES_CAPTURE  # under way: the merchant waits for its outcome
    assert Payment.objects.get(pk=payment.id).inflight == "cancel"
    assert payment.attempts.get().status == AS.AUTHORIZED
    assert "payment.canceled" not in event_types(merchant)


def _refused_is_told(merchant, payment) -> None:
    payment = Payment.objects.get(pk=payment.id)
    assert (payment.status, payment.inflight) == (PS.REQUIRES_CAPTURE, "")
    assert payment.attempts.get().status == AS.AUTHORIZED
    assert "payment.canceled" not in event_types(merchant)
    [event] = Event.objects.filter(merchant_id=merchant.id, type="payment.cancel_failed")
    assert (event.data["object"]["id"], event.data["object"]["status"]) == (payment.id, "requires_capture")
    assert not Journal.objects.filter(reference__contains=payment.attempts.get().id).exists()
    # still authorized at the PSP: the merchant can capture it
    assert payment_capture(merchant=merchant, payment_id=payment.id).status == PS.SUCCEEDED
    assert_ledger_sound()


def test_a_void_refused_after_answering_pending_is_found_by_recovery_and_told(psp_settings, settings):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    with authorized_at_standin(settings, void="pending_then_failed") as (merchant, _, payment):
        _cancel_under_way(merchant, payment)
        recovery_run(force=True)  # the PSP says: refused
        recovery_run(force=True)  # told once
        _refused_is_told(merchant, payment)


def test_a_void_refused_after_answering_pending_is_applied_from_the_webhook(psp_settings, settings):
    secret = psp_settings["alpha"].webhook_secret
    with authorized_at_standin(settings, void="pending_then_failed") as (merchant, psp, payment):
        _cancel_under_way(merchant, payment)
        [auth] = psp.auths.values()
        [void] = [o for o in auth["operations"] if o["type"] == "void"]
        for n in (1, 2):  # sent twice
            row = alpha_webhook(secret, f"evt_v{n}", "void.failed", void)
            psp_webhook_process(webhook_id=row.pk)
        _refused_is_told(merchant, payment)


def test_a_void_beta_accepts_later_cancels_the_payment_once(psp_settings, settings):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["beta"])
    payment = payment_create(
        merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD, capture_method="manual"
    )
    for _ in range(100):  # beta decides a moment later
        if Payment.objects.get(pk=payment.id).status != PS.PROCESSING:
            break
        recovery_run(force=True)
        time.sleep(0.1)
    assert Payment.objects.get(pk=payment.id).status == PS.REQUIRES_CAPTURE
    _cancel_under_way(merchant, payment)
    for _ in range(100):
        recovery_run(force=True)
        if Payment.objects.get(pk=payment.id).status == PS.CANCELED:
            break
        time.sleep(0.1)
    payment = Payment.objects.get(pk=payment.id)
    assert (payment.status, payment.inflight) == (PS.CANCELED, "")
    assert payment.attempts.get().status == AS.VOIDED
    assert event_types(merchant).count("payment.canceled") == 1
    assert "payment.cancel_failed" not in event_types(merchant)
    recovery_run(force=True)
    assert event_types(merchant).count("payment.canceled") == 1
