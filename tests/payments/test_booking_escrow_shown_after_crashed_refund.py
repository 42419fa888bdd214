"""A confirmed booking whose refund out of escrow already went (its cancel or partial completion
died after the refund, before recording the booking) shows what its escrow really holds.

What was wrong: `amount_escrowed` of a `confirmed` booking was always `amount_captured - fee`. In
that state the refund had already taken its share out of the merchant's escrow account, so the
booking (GET /v1/bookings/{id}, the list, its events) said 96.80 EUR were held for it while
`GET /v1/balance` showed an escrow of 0 (or only the completed part): the bookings' escrow no longer
added up to the balance, and a merchant reading the booking would fulfil a stay whose money had
already gone back to the shopper. The booking stays `confirmed` until the merchant retries (that
is the documented way to finish it), so the wrong figure lasted. Now a confirmed booking's
`amount_escrowed` is the capture less its fee less what its succeeded refunds took out of escrow
(each less its fee share), in a single query for a list.
"""

from __future__ import annotations

import pytest

from ledger.selectors import balance_get
from payments.bookings_selectors import booking_get, booking_list
from payments.bookings_serializers import render_booking
from payments.services import bookings as svc
from tests.helpers import confirmed_booking
from tests.merchants.factories import MerchantFactory

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
GROSS = 10000
FEE = (GROSS * 290 + 5000) // 10000 + 30


@pytest.fixture
def merchant(psp_settings):
    return MerchantFactory(connectors=["alpha"])


def _escrow(merchant) -> int:
    return sum(m.amount for m in balance_get(owner=merchant.id).escrow if m.currency == "EUR")


def _confirmed(merchant):
    return confirmed_booking(merchant, amount=GROSS, reference="crash")


@pytest.mark.parametrize("rest", [GROSS, 4000])  # a cancel's refund, a partial completion's
def test_a_confirmed_booking_whose_refund_went_shows_the_escrow_it_still_holds(
    merchant, settings, django_assert_max_num_queries, rest
):
    settings.PAYMENTS_INFLIGHT_TIMEOUT = 0  # the dead request's claim has timed out
    other = _confirmed(merchant)  # an untouched booking beside it
    booking = _confirmed(merchant)
    # the request's first steps, then it died
    if rest == GROSS:
        claimed = svc._cancel_begin(merchant=merchant, booking_id=booking.id)
    else:
        claimed, _ = svc._complete_begin(merchant=merchant, booking_id=booking.id, amount=GROSS - rest)
    refund = svc._escrow_refund(merchant=merchant, booking=claimed, amount=rest, actor="api")
    assert refund.status == "succeeded"

    shown = render_booking(booking_get(merchant=merchant, booking_id=booking.id))
    held = (GROSS - FEE) - (rest - FEE * rest // GROSS)  # what the refund did not take
    assert (shown["status"], shown["amount_escrowed"]) == ("confirmed", held)
    assert render_booking(booking_get(merchant=merchant, booking_id=other.id))["amount_escrowed"] == GROSS - FEE
    with django_assert_max_num_queries(3):  # the list: one query, whatever the bookings
        listed = [render_booking(b) for b in booking_list(merchant=merchant)]
    assert sum(b["amount_escrowed"] for b in listed) == _escrow(merchant) == held + GROSS - FEE

    # finishing it as the crashed request meant to: the booking and the balance agree at zero
    if rest == GROSS:
        done = svc.booking_cancel(merchant=merchant, booking_id=booking.id)
    else:
        done = svc.booking_complete(merchant=merchant, booking_id=booking.id, amount=GROSS - rest)
    assert render_booking(booking_get(merchant=merchant, booking_id=done.id))["amount_escrowed"] == 0
    assert _escrow(merchant) == GROSS - FEE
