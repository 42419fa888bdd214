"""The stuck-state sweeper (issue 6): anything in a non-final state past its SLA is re-driven
(status inquiry, operation inquiry, applying a stored webhook) or flagged with its reason — over
real HTTP to the sandbox PSPs, never decided by time alone."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test import override_settings

from payments.models import AS, PS, Payment, PaymentAttempt, PspWebhook, StuckItem
from payments.services import payment_authentication_complete, payment_create, psp_webhook_receive, stuck_sweep
from tests.merchants.factories import MerchantFactory

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
CARD_3DS = {**CARD, "card": {**CARD["card"], "number": "4000000000003220"}}
ALL_DUE = {key: 0 for key in ("payment.processing", "payment.requires_action", "payment.in_review",
                               "capture.pending", "refund.pending", "webhook.received")}


def _wait_at_psp(sandbox, attempt_id: str, states=("authorized", "captured")) -> dict:
    deadline = time.monotonic() + 10
    while True:
        rows = sandbox.payments(attempt_id)
        if rows and rows[0]["state"] in states:
            return rows[0]
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)


@pytest.mark.django_db
def test_nothing_is_touched_within_its_sla(psp_settings):
    merchant = MerchantFactory(connectors=["beta"])
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
    assert payment.status == PS.PROCESSING
    counts = stuck_sweep()  # default SLAs: 15 minutes for processing
    assert counts["stuck"] == 0 and not StuckItem.objects.exists()
    assert PaymentAttempt.objects.get(payment=payment).inquiries == 0


@pytest.mark.django_db
def test_a_processing_payment_past_its_sla_is_redriven_by_a_status_inquiry(psp_settings, settings):
    merchant = MerchantFactory(connectors=["beta"])  # beta's webhooks go elsewhere: it stays processing
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
    attempt = PaymentAttempt.objects.get(payment=payment)
    assert attempt.status == AS.PENDING
    _wait_at_psp(psp_settings["beta"], attempt.id)
    settings.PAYMENTS_STUCK_SLA_SECONDS = ALL_DUE
    counts = stuck_sweep()
    assert counts["redriven"] == 1 and counts["resolved"] == 1 and counts["flagged"] == 0
    assert Payment.objects.get(pk=payment.id).status == PS.SUCCEEDED
    item = StuckItem.objects.get(object_id=payment.id)
    assert item.cleared_at is not None and item.flagged_at is None and item.redrives == 1
    assert "now succeeded" in item.last_result
    assert len(psp_settings["beta"].payments(attempt.id)) == 1  # asked, never authorized again


@pytest.mark.django_db
def test_a_shopper_who_never_returns_is_flagged_once_with_the_reason_then_cleared(psp_settings, settings):
    merchant = MerchantFactory(connectors=["alpha"])
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD_3DS)
    assert payment.status == PS.REQUIRES_ACTION
    time.sleep(1.1)  # past an SLA of one second
    settings.PAYMENTS_STUCK_SLA_SECONDS = {**ALL_DUE, "payment.requires_action": 1}
    counts = stuck_sweep()
    assert counts["redriven"] == 1 and counts["flagged"] == 1
    item = StuckItem.objects.get(object_id=payment.id, cleared_at__isnull=True)
    assert item.flagged_at is not None and "3-D Secure" in item.reason and "still requires_action" in item.last_result
    inquiries = PaymentAttempt.objects.get(payment=payment).inquiries
    assert inquiries == 1
    # a second sweep within the SLA period neither asks the PSP again nor flags twice
    counts = stuck_sweep()
    assert counts["stuck"] == 1 and counts["redriven"] == 0 and counts["flagged"] == 0
    assert PaymentAttempt.objects.get(payment=payment).inquiries == inquiries
    assert StuckItem.objects.filter(object_id=payment.id).count() == 1
    # the shopper comes back and passes: the next sweep clears the item
    psp_settings["alpha"].submit_challenge(payment.next_action["redirect_to_url"]["url"], "pass")
    payment_authentication_complete(payment_id=payment.id)
    assert Payment.objects.get(pk=payment.id).status == PS.SUCCEEDED
    stuck_sweep()
    item.refresh_from_db()
    assert item.cleared_at is not None and "succeeded" in item.last_result


@pytest.mark.django_db
def test_a_payment_held_for_review_is_flagged_for_a_human_and_never_redriven(psp_settings, settings):
    merchant = MerchantFactory(connectors=["beta"])
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
    # the state a PSP amount mismatch leaves (payments.services: mark_in_review): set up directly
    Payment.objects.filter(pk=payment.pk).update(review_reason="amount_mismatch: requested 1000 EUR, beta reported 900")
    settings.PAYMENTS_STUCK_SLA_SECONDS = {**ALL_DUE, "payment.processing": 3600}
    counts = stuck_sweep()
    assert counts["flagged"] == 1 and counts["redriven"] == 0
    item = StuckItem.objects.get(object_id=payment.id)
    assert item.state == "in_review" and "a human must" in item.reason and item.redrives == 0
    assert PaymentAttempt.objects.get(payment=payment).inquiries == 0


@pytest.mark.django_db
def test_a_stored_webhook_whose_task_was_lost_is_applied_by_the_sweeper(psp_settings, settings):
    merchant = MerchantFactory(connectors=["beta"])
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
    attempt = PaymentAttempt.objects.get(payment=payment)
    beta = psp_settings["beta"]
    _wait_at_psp(beta, attempt.id)
    deadline = time.monotonic() + 10
    while not (events := [e for e in beta.events() if attempt.id in e["body"]]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    from psp_adapters.beta.webhooks import sign

    body = events[0]["body"].encode()
    # stored inside the test's transaction: its on-commit task never runs — the "lost task"
    row = psp_webhook_receive(connector="beta", body=body, headers={"Beta-Signature": sign(body, beta.webhook_secret)})
    assert PspWebhook.objects.get(pk=row.pk).status == "received"
    settings.PAYMENTS_STUCK_SLA_SECONDS = {**ALL_DUE, "payment.processing": 3600}
    counts = stuck_sweep()
    assert counts["resolved"] == 1
    assert PspWebhook.objects.get(pk=row.pk).status == "processed"
    assert Payment.objects.get(pk=payment.id).status == PS.SUCCEEDED
    item = StuckItem.objects.get(object_type="webhook")
    assert item.payment_id == payment.id and item.merchant_id == merchant.id and item.cleared_at is not None


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_open_one_item_per_stuck_object(psp_settings):
    merchant = MerchantFactory(connectors=["beta"])
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
    Payment.objects.filter(pk=payment.pk).update(review_reason="amount_mismatch")
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def sweep() -> None:
        try:
            with override_settings(PAYMENTS_STUCK_SLA_SECONDS={**ALL_DUE, "payment.processing": 3600}):
                barrier.wait()
                stuck_sweep()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert StuckItem.objects.filter(object_id=payment.id, cleared_at__isnull=True).count() == 1
