"""Service rules without HTTP: expiry, the in-flight claim, the circuit breaker, decline table."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from payments.circuit import circuit_open_set, circuit_record_failure, circuit_reset
from payments.models import AS, PS, DeclineCode, Payment
from payments.services import payment_capture, payment_create, payment_expire_authorizations
from payments.services.common import PaymentInProgressError
from payments.services.payments import decline_normalize
from psp_adapters.port import Decline, DeclineClass
from psp_adapters.port import DeclineCode as Code
from tests.merchants.factories import MerchantFactory

pytestmark = [pytest.mark.django_db]

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def test_authorizations_older_than_seven_days_are_voided_and_canceled(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"])
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD,
                             capture_method="manual")
    fresh = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD,
                           capture_method="manual")
    Payment.objects.filter(pk=payment.pk).update(authorized_at=timezone.now() - dt.timedelta(days=8))
    assert payment_expire_authorizations() == [payment.id]
    payment = Payment.objects.get(pk=payment.pk)
    assert payment.status == PS.CANCELED and payment.attempts.get().status == AS.VOIDED
    assert Payment.objects.get(pk=fresh.pk).status == PS.REQUIRES_CAPTURE


def test_a_second_mutation_while_one_is_in_flight_is_409(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"])
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD,
                             capture_method="manual")
    Payment.objects.filter(pk=payment.pk).update(inflight="refund", inflight_at=timezone.now())
    with pytest.raises(PaymentInProgressError):
        payment_capture(merchant=merchant, payment_id=payment.id)
    # a crashed request's claim is taken over after PAYMENTS_INFLIGHT_TIMEOUT; a cancel's never is
    # (a void may be pending at the PSP: tests/payments/test_void_pending_claim_timeout.py)
    old = timezone.now() - dt.timedelta(minutes=5)
    Payment.objects.filter(pk=payment.pk).update(inflight="cancel", inflight_at=old)
    with pytest.raises(PaymentInProgressError):
        payment_capture(merchant=merchant, payment_id=payment.id)
    Payment.objects.filter(pk=payment.pk).update(inflight="refund")
    assert payment_capture(merchant=merchant, payment_id=payment.id).status == PS.SUCCEEDED


def test_circuit_opens_after_repeated_technical_failures(settings):
    settings.PAYMENTS_CIRCUIT_THRESHOLD = 3
    circuit_reset(["zeta"])
    for _ in range(2):
        circuit_record_failure("zeta")
    assert circuit_open_set(["zeta", "alpha"]) == frozenset()
    circuit_record_failure("zeta")
    assert circuit_open_set(["zeta", "alpha"]) == frozenset({"zeta"})
    circuit_reset(["zeta"])


def test_operations_can_turn_a_decline_code_soft_in_the_table():
    hard = Decline(code=Code.GENERIC_DECLINE, decline_class=DeclineClass.HARD, psp_code="05")
    assert decline_normalize("alpha", hard).may_cascade is False
    DeclineCode.objects.filter(psp="alpha", psp_code="05").update(code="do_not_honor", decline_class="soft")
    changed = decline_normalize("alpha", hard)
    assert (changed.code, changed.may_cascade) == (Code.DO_NOT_HONOR, True)


def test_decline_table_is_seeded_from_the_adapters():
    from psp_adapters.codes import seed_rows

    assert DeclineCode.objects.count() >= len(seed_rows())


def test_a_payment_whose_capture_is_under_way_at_an_asynchronous_psp_is_not_cancelable(psp_settings):
    """Found by the payment state machine: beta (asynchronous) authorized, a capture went out and
    is pending (beta answers "received"); a cancel then reached beta, which refused the void (502
    to the merchant). It is refused before any PSP call, and the capture's outcome decides."""
    from payments.models import OperationStatus
    from payments.services import attempt_recover, payment_cancel
    from payments.services.common import PaymentStateError
    from payments.services.recovery import operation_recover
    from psp_adapters.port import OperationKind

    merchant = MerchantFactory(connectors=["beta"])
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", capture_method="manual",
                             payment_method_data={"type": "card", "card": {
                                 "number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    attempt = payment.attempts.get()
    for _ in range(100):  # beta decides a moment later; its webhook, or recovery, tells us
        attempt_recover(attempt_id=attempt.pk)
        payment.refresh_from_db()
        if payment.status == PS.REQUIRES_CAPTURE:
            break
    payment = payment_capture(merchant=merchant, payment_id=payment.pk)
    [capture] = payment.captures.all()
    assert (payment.status, capture.status) == (PS.REQUIRES_CAPTURE, OperationStatus.PENDING)
    with pytest.raises(PaymentStateError) as refused:
        payment_cancel(merchant=merchant, payment_id=payment.pk)
    assert refused.value.code == "payment_not_cancelable"
    (held,) = psp_settings["beta"].payments(attempt.pk)
    assert not [op for op in held["operations"] if op["kind"] == "void"]
    for _ in range(100):
        operation_recover(kind=OperationKind.CAPTURE, operation_id=capture.pk)
        payment.refresh_from_db()
        if payment.status == PS.SUCCEEDED:
            break
    assert payment.status == PS.SUCCEEDED and payment.amount_captured == 1000
