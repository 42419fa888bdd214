"""A cancel whose void TIMES OUT (processed at the PSP, answer lost) (session 13's review: it was
never recovered: `_cancel_record` released the payment's `cancel` claim whatever the error, so
`recovery_run`'s `cancel_recover` never asked the PSP, and Payera showed `requires_capture` for an
authorization the PSP held voided until the 7-day expiry voided it again).

Now the cancel asks the PSP at once: a voided authorization is the cancel asked for. When the PSP
does not (yet) say voided, the claim stays and recovery asks again after the grace period."""

from __future__ import annotations

import httpx
import pytest

from payments.models import AS, PS, Payment
from payments.services import payment_cancel, payment_create, recovery_run
from psp_adapters.errors import PspTimeoutError, PspUnavailableError
from tests.merchants.factories import MerchantFactory

pytestmark = [pytest.mark.django_db]

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def _chaos(sb, chaos: dict) -> None:
    httpx.put(sb.url + "/_sandbox/config", headers=sb._auth(), json={"chaos": chaos}).raise_for_status()


@pytest.fixture
def alpha_chaos(psp_settings):
    yield psp_settings["alpha"]
    _chaos(psp_settings["alpha"], {})


def test_a_void_that_timed_out_after_alpha_voided_is_recovered_to_canceled(alpha_chaos, settings):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    sb = alpha_chaos
    merchant = MerchantFactory(connectors=["alpha"])
    payment = payment_create(
        merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD, capture_method="manual"
    )
    assert payment.status == PS.REQUIRES_CAPTURE
    attempt = payment.attempts.get()

    # alpha processes the void, then holds its answer past the adapter's read timeout (1.5 s)
    _chaos(sb, {"timeout_rate": 1, "timeout_seconds": 3})
    try:
        answered = payment_cancel(merchant=merchant, payment_id=payment.id)
    finally:
        _chaos(sb, {})
    [held] = sb.payments(attempt.id)
    assert held["state"] == "voided"  # the PSP did void it
    # asked at once: the merchant's cancel succeeded, the claim is gone, nothing is left to recover
    assert answered.status == PS.CANCELED and not answered.inflight
    assert payment.attempts.get().status == AS.VOIDED
    assert recovery_run(force=True)["cancels"] == 0


def test_a_void_timeout_keeps_the_cancel_claim_until_the_psp_says(alpha_chaos, settings):
    """When the PSP does not say voided right after the timeout (the void may still be on its way),
    the claim stays for recovery; recovery releases it once the PSP still holds it authorized."""
    from payments.services.payments import _cancel_begin, _cancel_record
    from payments.services.recovery import cancel_recover

    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["alpha"])
    payment = payment_create(
        merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD, capture_method="manual"
    )
    attempt = _cancel_begin(merchant=merchant, payment_id=payment.id, actor="api")
    timeout = PspTimeoutError("read timeout", connector="alpha")
    _cancel_record(payment_id=payment.id, attempt_id=attempt.id, outcome=None, error=timeout, actor="api")
    assert Payment.objects.get(pk=payment.pk).inflight == "cancel"  # kept: the outcome is unknown
    cancel_recover(payment_id=payment.id, release=False)  # alpha holds it authorized: asked too soon
    assert Payment.objects.get(pk=payment.pk).inflight == "cancel"
    assert recovery_run(force=True)["cancels"] == 1  # past the grace: the void never arrived
    payment = Payment.objects.get(pk=payment.pk)
    assert (payment.status, payment.inflight) == (PS.REQUIRES_CAPTURE, "")
    # a refused void (nothing processed) releases the claim at once, as before
    attempt = _cancel_begin(merchant=merchant, payment_id=payment.id, actor="api")
    refused = PspUnavailableError("503", connector="alpha")
    _cancel_record(payment_id=payment.id, attempt_id=attempt.id, outcome=None, error=refused, actor="api")
    assert Payment.objects.get(pk=payment.pk).inflight == ""
    assert payment_cancel(merchant=merchant, payment_id=payment.id).status == PS.CANCELED


def test_a_3ds_cancel_whose_void_timed_out_does_not_answer_not_cancelable_for_a_canceled_payment(alpha_chaos):
    """payment_cancel during `requires_action`: the void times out after alpha voided the
    challenge; `attempt_recover` records the PSP's truth (voided -> payment `canceled`). It used to
    answer 400 `payment_not_cancelable` "The shopper completed the payment before it could be
    canceled" for any status but `requires_action`: the merchant was told the cancel failed and the
    shopper paid, while the payment was canceled and nothing charged. The contract keeps that 400
    for "the shopper completed it"; a canceled payment is the cancel's answer."""
    from payments.services.payments import PaymentNotCancelableError

    sb = alpha_chaos
    merchant = MerchantFactory(connectors=["alpha"])
    three_ds = {**CARD, "card": {**CARD["card"], "number": "4000000000003220"}}
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=three_ds)
    assert payment.status == PS.REQUIRES_ACTION
    attempt = payment.attempts.get()

    _chaos(sb, {"timeout_rate": 1, "timeout_seconds": 3})  # POSTs only: the inquiry (GET) answers
    answer: Exception | None = None
    try:
        payment_cancel(merchant=merchant, payment_id=payment.id)
    except Exception as exc:  # noqa: BLE001 - inspected below
        answer = exc
    _chaos(sb, {})
    [held] = sb.payments(attempt.id)
    assert held["state"] == "voided"
    payment = Payment.objects.get(pk=payment.pk)
    assert payment.status == PS.CANCELED  # recovered from the PSP's state inside the call
    assert not isinstance(answer, PaymentNotCancelableError), (
        f"the payment is canceled and nothing was charged, yet the merchant is told: {answer!r}"
    )
