"""Recovery finishes a booking cancel or partial completion that died after its refund out of
escrow, exactly once, also while the merchant's own retry races it (real threads, PostgreSQL row
locks, the alpha sandbox over HTTP).

What was wrong: nothing but the merchant's retry ever recorded such a booking: it stayed
`confirmed` with its escrow already refunded (the shopper had the money back) — and for a partial
completion nothing released to the merchant — until the merchant happened to try again. Now
`recovery_run` records it as the request would have ended (`bookings` in its counts). The
process-killing versions are in tests/scenarios/crash/test_crash_points.py; here the request
failed with an error between the refund and the booking's record (its claim released by the
request), which recovery finishes the same way, and the merchant's retry races recovery.
"""

from __future__ import annotations

import pytest
from django.db import connection

from ledger.models import Journal
from ledger.selectors import balance_get
from payera.core.errors import PayeraError
from payera.events.models import Event
from payments.models import Booking, OperationStatus, Refund
from payments.services import bookings as svc
from payments.services.recovery import recovery_run
from tests.helpers import confirmed_booking
from tests.merchants.factories import MerchantFactory
from tests.payments.test_concurrency import _race
from tests.scenarios.conftest import assert_ledger_sound, fee

pytestmark = [pytest.mark.django_db(transaction=True)]

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
GROSS = 10_000


@pytest.fixture
def merchant(psp_settings, settings):
    if connection.vendor != "postgresql":
        pytest.skip("row locks under real concurrency: PostgreSQL")
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0  # the failed request is known to be over
    return MerchantFactory(connectors=["alpha"])


def _eur(money) -> int:
    return sum(m.amount for m in money if m.currency == "EUR")


def _confirmed(merchant) -> Booking:
    return confirmed_booking(merchant, amount=GROSS, reference="stay")


class _Died(Exception):
    pass


def _died_after_refund(merchant, booking, monkeypatch, *, amount: int | None) -> Refund:
    """The request refunds out of escrow, then fails before recording the booking."""

    def die(**kwargs):
        raise _Died("after the refund, before the booking was recorded")

    monkeypatch.setattr(svc, "_cancel_record", die)
    monkeypatch.setattr(svc, "_complete_record", die)
    with pytest.raises(_Died):
        if amount is None:
            svc.booking_cancel(merchant=merchant, booking_id=booking.id)
        else:
            svc.booking_complete(merchant=merchant, booking_id=booking.id, amount=amount)
    monkeypatch.undo()
    (refund,) = Refund.objects.filter(payment_id=booking.payment_id)
    assert refund.status == OperationStatus.SUCCEEDED and refund.amount == GROSS - (amount or 0)
    assert Booking.objects.get(pk=booking.id).status == "confirmed"
    return refund


def _events(booking_id: str) -> list[str]:
    return [
        e.type
        for e in Event.objects.filter(type__in=["booking.canceled", "booking.completed"])
        if e.data["object"]["id"] == booking_id
    ]


def _assert_finished(merchant, booking, refund, *, amount: int | None) -> None:
    b = Booking.objects.get(pk=booking.id)
    balance = balance_get(owner=merchant.id)
    assert Refund.objects.filter(payment_id=booking.payment_id).count() == 1
    assert _eur(balance.escrow) == 0 and b.amount_escrowed == 0 and b.inflight == "" and b.refund_id == refund.id
    if amount is None:
        assert (b.status, b.amount_refunded, b.amount_released) == ("canceled", GROSS, 0)
        assert _events(booking.id) == ["booking.canceled"] and _eur(balance.pending) == 0
        assert not Journal.objects.filter(reference=f"escrow_release:{booking.id}").exists()
    else:
        rest = GROSS - amount
        assert (b.status, b.amount_refunded) == ("completed", rest)
        assert _eur(balance.pending) == b.amount_released == amount - (fee(GROSS) - fee(GROSS) * rest // GROSS)
        assert _events(booking.id) == ["booking.completed"]
        assert Journal.objects.filter(reference=f"escrow_release:{booking.id}").count() == 1
    assert_ledger_sound()


@pytest.mark.parametrize("amount", [None, 6_000], ids=["cancel", "partial_completion"])
def test_recovery_finishes_a_booking_whose_request_failed_after_its_refund(merchant, monkeypatch, amount):
    booking = _confirmed(merchant)
    refund = _died_after_refund(merchant, booking, monkeypatch, amount=amount)
    assert recovery_run(force=True)["bookings"] == 1
    _assert_finished(merchant, booking, refund, amount=amount)
    assert recovery_run(force=True)["bookings"] == 0  # once
    _assert_finished(merchant, booking, refund, amount=amount)


def test_recovery_leaves_a_booking_alone_within_the_grace_period(merchant, monkeypatch, settings):
    """Its request may be running right now (between its refund and its record)."""
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 60
    booking = _confirmed(merchant)
    _died_after_refund(merchant, booking, monkeypatch, amount=None)
    assert recovery_run(force=True)["bookings"] == 0
    assert Booking.objects.get(pk=booking.id).status == "confirmed"


@pytest.mark.parametrize("round_", range(3))
@pytest.mark.parametrize("amount", [None, 6_000], ids=["cancel", "partial_completion"])
def test_recovery_racing_the_merchants_retry_finishes_once(merchant, monkeypatch, amount, round_):
    booking = _confirmed(merchant)
    refund = _died_after_refund(merchant, booking, monkeypatch, amount=amount)

    def act(i: int):
        if i == 0:
            return recovery_run(force=True)["bookings"]
        if amount is None:
            return svc.booking_cancel(merchant=merchant, booking_id=booking.id)
        return svc.booking_complete(merchant=merchant, booking_id=booking.id, amount=amount)

    recovered, retried = _race(2, act)
    assert recovered in (0, 1), recovered
    if isinstance(retried, Exception):  # recovery recorded it first: the retry finds it closed (or busy)
        assert isinstance(retried, PayeraError) and retried.http_status in (400, 409), retried
        assert recovered == 1
    else:
        assert isinstance(retried, Booking) and retried.status == ("canceled" if amount is None else "completed")
    _assert_finished(merchant, booking, refund, amount=amount)
