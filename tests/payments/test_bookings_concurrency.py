"""Bookings under real concurrency on PostgreSQL (threads, the alpha sandbox): confirm racing the
expiry, and completions racing each other, each end in exactly one effect."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.db import connection

from ledger.models import Journal
from ledger.selectors import balance_get
from payera.core.errors import PayeraError
from payments.models import Booking, Capture, OperationStatus, Refund
from payments.services.bookings import booking_complete, booking_confirm, booking_create, booking_expire
from tests.merchants.factories import MerchantFactory
from tests.payments.test_concurrency import _race
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = [pytest.mark.django_db(transaction=True)]

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
FEE = (10000 * 290 + 5000) // 10000 + 30


@pytest.fixture
def merchant_alpha(psp_settings):
    if connection.vendor != "postgresql":
        pytest.skip("row locks under real concurrency: PostgreSQL")
    return MerchantFactory(connectors=["alpha"])


def _eur(money) -> int:
    return sum(m.amount for m in money if m.currency == "EUR")


def _held(merchant, hold: float = 600) -> Booking:
    booking = booking_create(merchant=merchant, amount=10000, currency="EUR", reference="race",
                             hold_expires_at=int(time.time() + hold), payment_method_data=CARD)
    assert booking.status == "held"
    return booking


@pytest.mark.parametrize("round_", range(3))
def test_confirm_racing_the_expiry_ends_in_exactly_one_of_them(merchant_alpha, round_):
    booking = _held(merchant_alpha)
    after_hold = booking.hold_expires_at + dt.timedelta(seconds=1)  # the expiry believes the hold is over

    def act(i: int):
        if i == 0:
            return booking_confirm(merchant=merchant_alpha, booking_id=booking.id)
        return booking_expire(booking_id=booking.id, now_=after_hold)

    results = _race(2, act)
    assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, PayeraError)], results
    booking.refresh_from_db()
    balance = balance_get(owner=merchant_alpha.id)
    captures = Capture.objects.filter(payment_id=booking.payment_id, status=OperationStatus.SUCCEEDED).count()
    if booking.status == "confirmed":
        assert results[1] is False and captures == 1
        assert _eur(balance.escrow) == 10000 - FEE and _eur(balance.pending) == 0
        assert booking.payment.status == "succeeded"
    else:
        assert booking.status == "expired", booking.status
        assert isinstance(results[0], PayeraError) and results[0].http_status in (400, 409), results
        assert captures == 0 and booking.payment.status == "canceled"
        assert _eur(balance.escrow) == 0 and _eur(balance.pending) == 0
    assert Booking.objects.get(pk=booking.id).inflight == ""
    assert_ledger_sound()


def test_two_completions_at_once_release_once(merchant_alpha):
    booking = _held(merchant_alpha)
    booking_confirm(merchant=merchant_alpha, booking_id=booking.id)
    results = _race(2, lambda i: booking_complete(merchant=merchant_alpha, booking_id=booking.id,
                                                  amount=6000 + i * 1000))
    ok = [r for r in results if isinstance(r, Booking)]
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(ok) == 1, results
    assert all(isinstance(e, PayeraError) and e.http_status in (400, 409) for e in errors), errors
    booking.refresh_from_db()
    assert booking.status == "completed"
    rest = booking.amount_refunded
    assert rest in (4000, 3000)
    assert Journal.objects.filter(reference=f"escrow_release:{booking.id}").count() == 1
    assert Refund.objects.filter(payment_id=booking.payment_id).exclude(status=OperationStatus.FAILED).count() == 1
    balance = balance_get(owner=merchant_alpha.id)
    fee_back = FEE * rest // 10000
    assert _eur(balance.pending) == booking.amount_released == (10000 - rest) - (FEE - fee_back)
    assert _eur(balance.escrow) == 0
    assert_ledger_sound()


def test_the_scheduler_run_twice_at_once_voids_once(merchant_alpha):
    from payments.services.bookings import booking_expire_due

    booking = _held(merchant_alpha)
    later = booking.hold_expires_at + dt.timedelta(seconds=1)
    results = _race(2, lambda i: booking_expire_due(now_=later))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(len(r) for r in results) == [0, 1]  # one tick expired it, the other found nothing to do
    booking.refresh_from_db()
    assert booking.status == "expired" and booking.payment.status == "canceled"
    assert_ledger_sound()


@pytest.mark.parametrize("complete_amount", [None, 6000])
def test_complete_racing_cancel_ends_in_exactly_one_of_them(merchant_alpha, complete_amount):
    """A merchant's complete (whole or partial) and a cancel of the same confirmed booking at once
    (real threads, PostgreSQL row locks): one takes effect, the other is refused (409 in progress,
    or 400 once the booking is closed); the escrow ends at zero, the money is either released or
    refunded, never both, and the booking's counters agree with the ledger."""
    from payments.services.bookings import booking_cancel

    booking = _held(merchant_alpha)
    booking_confirm(merchant=merchant_alpha, booking_id=booking.id)

    def act(i: int):
        if i == 0:
            return booking_complete(merchant=merchant_alpha, booking_id=booking.id, amount=complete_amount)
        return booking_cancel(merchant=merchant_alpha, booking_id=booking.id)

    results = _race(2, act)
    ok = [r for r in results if isinstance(r, Booking)]
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(ok) == 1, results
    assert all(isinstance(e, PayeraError) and e.http_status in (400, 409) for e in errors), errors
    booking.refresh_from_db()
    balance = balance_get(owner=merchant_alpha.id)
    live = Refund.objects.filter(payment_id=booking.payment_id).exclude(status=OperationStatus.FAILED)
    assert _eur(balance.escrow) == 0 and booking.amount_escrowed == 0
    if booking.status == "canceled":
        assert [r.amount for r in live] == [10000] and booking.amount_refunded == 10000
        assert booking.amount_released == 0 and _eur(balance.pending) == 0
        assert not Journal.objects.filter(reference=f"escrow_release:{booking.id}").exists()
    else:
        assert booking.status == "completed", booking.status
        rest = 10000 - (complete_amount or 10000)
        assert [r.amount for r in live] == ([rest] if rest else []) and booking.amount_refunded == rest
        fee_back = FEE * rest // 10000
        assert _eur(balance.pending) == booking.amount_released == (10000 - rest) - (FEE - fee_back)
        assert Journal.objects.filter(reference=f"escrow_release:{booking.id}").count() == 1
    assert Booking.objects.get(pk=booking.id).inflight == ""
    assert_ledger_sound()
