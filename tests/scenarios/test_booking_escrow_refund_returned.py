"""A booking's refund out of escrow that the PSP reported succeeded and later reports failed (the
shopper's bank sent it back: sandbox `POST /_sandbox/refunds/<op>/return`, `Refund.mark_reversed`).

What was wrong: the reversal gave the money back to the merchant's pending balance, as for any
payment, but never told the booking. A closed booking (canceled after confirm, or completed in
part) kept `amount_refunded` at the returned refund and `amount_released` without the money that
went to pending, so the booking said the shopper got money back that the merchant actually holds,
and no `booking.*` event said otherwise. Worse, a booking still `confirmed` when the reversal
landed (its cancel died after the refund succeeded, before recording the booking) had the
money put in pending while the booking still held it in escrow: the ledger's escrow said 0, the
booking said `amount_escrowed` = capture less fee, and completing it then released that again
from an empty escrow (escrow negative, the merchant paid twice) or canceling it refunded out of
nothing.

Now: a refund that came out of escrow is reversed into escrow while its booking is still
`confirmed` (the booking can be completed or canceled again for it), and into pending once the
booking is closed, with the booking's counters updated (`amount_refunded` less the refund,
`amount_released` plus what the refund had taken out of escrow) and `booking.refund_failed`
sent, so counters and the escrow ledger balance agree.
"""

from __future__ import annotations

import time

import pytest

from ledger.selectors import balance_get
from payera.events.models import Event
from payments.models import Booking, Refund
from payments.services import psp_webhook_process_due
from tests.scenarios.conftest import assert_ledger_sound, fee
from tests.scenarios.test_bookings import balances, book, get, types

pytestmark = [pytest.mark.scenario]

AMOUNT = 10000
FEE = fee(AMOUNT)  # 320


def _return(env, refund_id: str) -> None:
    refund = Refund.objects.get(pk=refund_id)
    assert refund.status == "succeeded" and refund.psp_reference
    answer = env.sandboxes["alpha"].return_refund(refund.psp_reference)
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 15
    while Refund.objects.get(pk=refund_id).status != "failed":
        assert time.monotonic() < deadline, "the refund's return never arrived"
        time.sleep(0.1)
        psp_webhook_process_due()


def _escrow_agrees(env, booking_id: str) -> None:
    """The booking's counters account for its escrow: what confirm put in (capture less fee) is
    what it released, plus what its refunds out of escrow still take, plus what it holds; and what
    it holds is the merchant's escrow balance (one booking per merchant here)."""
    b = get(env, booking_id)
    booking = Booking.objects.get(pk=booking_id)
    taken = 0
    if b["amount_refunded"]:
        taken = b["amount_refunded"] - FEE * b["amount_refunded"] // AMOUNT
    assert b["amount_captured"] - b["fee"] == b["amount_released"] + taken + b["amount_escrowed"], b
    escrow = sum(m.amount for m in balance_get(owner=env.merchant.id).escrow if m.currency == "EUR")
    assert escrow == b["amount_escrowed"] == booking.amount_escrowed, (escrow, b)


@pytest.mark.parametrize("how", ["cancel_after_confirm", "partial_completion"])
def test_a_closed_bookings_escrow_refund_returned_updates_the_booking(env, how):
    b = book(env)
    env.post(f"/v1/bookings/{b['id']}/confirm")
    if how == "cancel_after_confirm":
        b = env.post(f"/v1/bookings/{b['id']}/cancel")
        assert (b["status"], b["amount_refunded"]) == ("canceled", AMOUNT)
        again = AMOUNT
    else:
        b = env.post(f"/v1/bookings/{b['id']}/complete", {"amount": 6000})
        assert (b["status"], b["amount_refunded"]) == ("completed", 4000)
        again = 4000
    _escrow_agrees(env, b["id"])

    _return(env, b["refund"])
    b = get(env, b["id"])
    assert (b["amount_refunded"], b["amount_released"], b["amount_escrowed"]) == (0, AMOUNT - FEE, 0)
    assert balances(env) == (AMOUNT - FEE, 0, 0)
    _escrow_agrees(env, b["id"])
    assert types(env, b["id"])[-1] == "booking.refund_failed"
    told = [e for e in Event.objects.filter(merchant_id=env.merchant.id, type="booking.refund_failed")]
    assert [e.data["object"]["amount_refunded"] for e in told] == [0]
    assert_ledger_sound()

    # the merchant holds the money again and may refund it again, out of pending
    r = env.http.post("/v1/refunds", json={"payment": b["payment"], "amount": again})
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    assert balances(env) == (AMOUNT - FEE - again + FEE * again // AMOUNT, 0, 0)
    assert_ledger_sound()


@pytest.mark.parametrize("then", ["cancel", "complete"])
def test_a_confirmed_bookings_escrow_refund_returned_goes_back_into_escrow(env, settings, then):
    """The cancel died after its refund out of escrow succeeded, before recording the booking
    (simulated by running its first two steps only); the PSP then sends the refund back."""
    from payments.services.bookings import _cancel_begin, _escrow_refund

    settings.PAYMENTS_INFLIGHT_TIMEOUT = 0  # the dead request's claim on the booking has timed out
    b = book(env)
    env.post(f"/v1/bookings/{b['id']}/confirm")
    booking = _cancel_begin(merchant=env.merchant, booking_id=b["id"])
    refund = _escrow_refund(merchant=env.merchant, booking=booking, amount=AMOUNT, actor="api")
    assert refund.status == "succeeded" and balances(env) == (0, 0, 0)

    _return(env, refund.id)
    b = get(env, b["id"])
    assert (b["status"], b["amount_escrowed"], b["amount_refunded"], b["amount_released"]) == (
        "confirmed",
        AMOUNT - FEE,
        0,
        0,
    )
    # the money is back where the booking holds it: in escrow, not in pending
    assert balances(env) == (0, 0, AMOUNT - FEE)
    _escrow_agrees(env, b["id"])
    [told] = Event.objects.filter(merchant_id=env.merchant.id, type="booking.refund_failed")
    assert (told.data["object"]["status"], told.data["object"]["amount_escrowed"]) == ("confirmed", AMOUNT - FEE)
    assert_ledger_sound()

    if then == "cancel":  # refunded again for the whole amount, out of escrow
        b = env.post(f"/v1/bookings/{b['id']}/cancel")
        assert (b["status"], b["amount_refunded"], b["amount_released"]) == ("canceled", AMOUNT, 0)
        assert b["refund"] != refund.id and Refund.objects.get(pk=b["refund"]).status == "succeeded"
        assert balances(env) == (0, 0, 0)
    else:  # released for the whole amount, once
        b = env.post(f"/v1/bookings/{b['id']}/complete")
        assert (b["status"], b["amount_refunded"], b["amount_released"]) == ("completed", 0, AMOUNT - FEE)
        assert balances(env) == (AMOUNT - FEE, 0, 0)
    _escrow_agrees(env, b["id"])
    assert_ledger_sound()
