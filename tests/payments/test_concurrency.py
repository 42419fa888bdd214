"""Concurrency on PostgreSQL with real threads: one capture, refunds never above captured."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from payera.core.errors import PayeraError
from payments.models import Capture, OperationStatus, Payment, Refund
from payments.services import payment_capture, payment_create, refund_create
from tests.merchants.factories import MerchantFactory
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = [pytest.mark.django_db(transaction=True)]

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def _race(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:  # collected and asserted on by the test
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.fixture
def merchant_alpha(psp_settings):
    if connection.vendor != "postgresql":
        pytest.skip("row locks under real concurrency: PostgreSQL")
    return MerchantFactory(connectors=["alpha"])


def test_two_captures_at_once_capture_once(merchant_alpha):
    payment = payment_create(merchant=merchant_alpha, amount=1000, currency="EUR", payment_method_data=CARD,
                             capture_method="manual")
    assert payment.status == "requires_capture"
    results = _race(2, lambda i: payment_capture(merchant=merchant_alpha, payment_id=payment.id,
                                                 amount_to_capture=500 + i * 100))
    ok = [r for r in results if isinstance(r, Payment)]
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(ok) == 1, results
    assert all(isinstance(e, PayeraError) and e.http_status in (400, 409) for e in errors), errors
    assert Capture.objects.filter(payment=payment, status=OperationStatus.SUCCEEDED).count() == 1
    payment = Payment.objects.get(pk=payment.id)
    assert payment.amount_captured in (500, 600) and payment.status == "succeeded"
    assert_ledger_sound()


def test_racing_refunds_never_exceed_the_captured_amount(merchant_alpha):
    payment = payment_create(merchant=merchant_alpha, amount=1000, currency="EUR", payment_method_data=CARD)
    assert payment.status == "succeeded"
    for _round in range(3):
        _race(4, lambda i: refund_create(merchant=merchant_alpha, payment_id=payment.id, amount=300))
    refunded = sum(Refund.objects.filter(payment=payment, status=OperationStatus.SUCCEEDED).values_list(
        "amount", flat=True))
    assert refunded <= 1000
    assert refunded == 900  # 3 of 300 fit, a fourth never
    assert Payment.objects.get(pk=payment.id).amount_refunded == refunded
    assert_ledger_sound()
