"""A booking's escrow is not released again after its own refund already emptied it.

What was wrong (review 13a):
A cancel of a confirmed booking is two durable steps: the refund out of escrow (refund_create:
PSP called, refund recorded, the ledger takes it out of escrow), then `_cancel_record` (booking ->
canceled). A crash (or a DB error) between the two leaves the booking `confirmed` with its escrow
already refunded. A later `complete` of the whole amount takes the `rest == 0` path, which never
looks at the live refund, and releases the full escrow share to pending: the shopper has the money
back AND the merchant is credited with it (escrow goes negative, pending positive and settleable).
The same happens after a crashed *partial* completion followed by a full completion.

Now a completion must agree with the refund an earlier request already made out of the escrow
(`_escrow_refund_matches`, checked under the booking's lock when the completion begins and again
when it records): otherwise it is refused (400 `booking_unexpected_state`) and nothing moves; the
merchant finishes what the crashed request began (cancel again, or complete the amount left).
"""

from __future__ import annotations

import pytest

from ledger.selectors import balance_get
from payments.models import Booking, OperationStatus, Refund
from payments.services import bookings as svc
from tests.helpers import confirmed_booking
from tests.merchants.factories import MerchantFactory

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
GROSS = 10000
FEE = (GROSS * 290 + 5000) // 10000 + 30


@pytest.fixture
def merchant(db, psp_settings):
    return MerchantFactory(connectors=["alpha"])


def _eur(money) -> int:
    return sum(m.amount for m in money if m.currency == "EUR")


def _confirmed(merchant) -> Booking:
    return confirmed_booking(merchant, amount=GROSS, reference="crash")


class _Crash(Exception):
    pass


def _crash(**kwargs):
    raise _Crash("the process died after the refund, before the booking was recorded")


def test_complete_after_a_crashed_cancel_does_not_release_escrow_the_refund_already_took(merchant, monkeypatch):
    booking = _confirmed(merchant)
    monkeypatch.setattr(svc, "_cancel_record", _crash)
    with pytest.raises(_Crash):
        svc.booking_cancel(merchant=merchant, booking_id=booking.id)
    monkeypatch.undo()
    refund = Refund.objects.get(payment_id=booking.payment_id)
    assert refund.status == OperationStatus.SUCCEEDED and refund.amount == GROSS  # the shopper has it all back
    assert Booking.objects.get(pk=booking.id).status == "confirmed"
    assert _eur(balance_get(owner=merchant.id).escrow) == 0  # the refund emptied the escrow

    # the merchant (or its retry logic) now completes the booking: refused, nothing moves
    with pytest.raises(svc.BookingStateError, match="cancel the booking again"):
        svc.booking_complete(merchant=merchant, booking_id=booking.id)
    balance = balance_get(owner=merchant.id)
    # everything went back to the shopper: nothing is owed to the merchant anywhere
    assert (_eur(balance.escrow), _eur(balance.pending)) == (0, 0), (
        f"escrow {_eur(balance.escrow)}, pending {_eur(balance.pending)}: released after the refund"
    )


def test_full_complete_after_a_crashed_partial_complete_does_not_release_the_refunded_part(merchant, monkeypatch):
    booking = _confirmed(merchant)
    monkeypatch.setattr(svc, "_complete_record", _crash)
    with pytest.raises(_Crash):
        svc.booking_complete(merchant=merchant, booking_id=booking.id, amount=6000)
    monkeypatch.undo()
    refund = Refund.objects.get(payment_id=booking.payment_id)
    assert refund.status == OperationStatus.SUCCEEDED and refund.amount == 4000

    with pytest.raises(svc.BookingStateError, match="complete it with amount 6000"):
        svc.booking_complete(merchant=merchant, booking_id=booking.id)  # the whole amount this time
    balance = balance_get(owner=merchant.id)
    assert _eur(balance.escrow) >= 0, f"escrow {_eur(balance.escrow)}: more released than the escrow held"
    # the merchant keeps at most what the shopper did not get back, less its fee share
    assert _eur(balance.escrow) + _eur(balance.pending) == 6000 - (FEE - FEE * 4000 // GROSS)
    assert _eur(balance.pending) <= 6000 - (FEE - FEE * 4000 // GROSS)
    assert _eur(balance.pending) == 0  # refused: nothing released

    # completing the amount the refund left takes that refund over and releases exactly the rest
    assert svc.booking_complete(merchant=merchant, booking_id=booking.id, amount=6000).status == "completed"
    assert Refund.objects.filter(payment_id=booking.payment_id).count() == 1
    balance = balance_get(owner=merchant.id)
    assert (_eur(balance.escrow), _eur(balance.pending)) == (0, 6000 - (FEE - FEE * 4000 // GROSS))


def test_cancel_after_a_crashed_partial_complete_says_what_to_do(merchant, monkeypatch):
    """After a partial completion died having refunded the rest, a cancel was refused with "A
    refund of 4000 out of this booking's escrow is already under way." and `param: amount` — on an
    endpoint that takes no amount, and without saying what finishes the booking (the docs promise
    the message does). Nothing moves, as before; the message now names the completion to send."""
    booking = _confirmed(merchant)
    monkeypatch.setattr(svc, "_complete_record", _crash)
    with pytest.raises(_Crash):
        svc.booking_complete(merchant=merchant, booking_id=booking.id, amount=6000)
    monkeypatch.undo()

    with pytest.raises(svc.BookingStateError) as refused:
        svc.booking_cancel(merchant=merchant, booking_id=booking.id)
    assert "complete it with amount 6000" in refused.value.message
    assert refused.value.param is None
    assert Refund.objects.filter(payment_id=booking.payment_id).count() == 1
    assert Booking.objects.get(pk=booking.id).inflight == ""
    assert svc.booking_complete(merchant=merchant, booking_id=booking.id, amount=6000).status == "completed"
