"""A completed booking's escrow ends at zero when a merchant refund (out of pending) settles
before the booking's own refund of the rest (out of escrow).

What was wrong (review 13a): a partial completion's refund (out of escrow) and a later merchant
refund (out of pending) settle in the other order, and the booking's escrow is left with a minor
unit.

The completion releases `A - ceil(F·A/G)` and leaves `R - floor(F·R/G)` in escrow for the refund of
the rest R (payments/postings.py `escrow_release_amount`). But when the PSP confirms that refund,
`refund_record_outcome` computes its fee share on the payment's running total
(`refunded_before=payment.amount_refunded`): if a merchant refund out of pending succeeded first
(allowed once the booking is completed, and pending while an asynchronous PSP answers), the escrow
refund returns a different fee share and takes a different amount out of escrow than it holds. The
closed booking's escrow never goes back to zero (here 1 cent stays there, owed to nobody).

Now the booking's refund out of escrow returns the fixed share its escrow keeps for it,
floor(F·R/G), whenever it settles, and a refund out of pending that settles first counts it ahead
on the running total (`postings.refund_fee_back`), so the whole fee still comes back at 100 %.

Real HTTP, the asynchronous sandbox beta; the merchant refund's confirmation is applied first
(as beta's webhook would be, were it delivered first), then the stored webhooks.
"""

from __future__ import annotations

import time

import pytest

from ledger.selectors import balance_get
from payments.models import Booking, OperationStatus, Refund
from payments.services import psp_webhook_process_due
from payments.services.refunds import refund_record_outcome
from psp_adapters.port import Outcome
from tests.scenarios.conftest import assert_ledger_sound, env  # noqa: F401  (the fixture)

GROSS = 10000
FEE = (GROSS * 290 + 5000) // 10000 + 30  # 320


def _eur(money) -> int:
    return sum(m.amount for m in money if m.currency == "EUR")


def _wait(pred, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        psp_webhook_process_due()
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
def test_a_completed_bookings_escrow_ends_at_zero_whatever_order_its_refunds_settle_in(env):  # noqa: F811
    env.merchant.connectors = ["beta"]
    env.merchant.save(update_fields=["connectors"])
    body = {
        "amount": GROSS,
        "currency": "EUR",
        "reference": "round",
        "hold_expires_at": int(time.time() + 3600),
        "payment_method_data": {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        },
    }
    r = env.http.post("/v1/bookings", json=body)
    assert r.status_code == 201, r.text
    bk = r.json()["id"]
    _wait(lambda: Booking.objects.filter(pk=bk, status="held").exists(), "held")
    env.post(f"/v1/bookings/{bk}/confirm")
    _wait(lambda: Booking.objects.filter(pk=bk, status="confirmed").exists(), "confirmed")

    # complete 9950: the rest (50) is refunded out of escrow; beta answers "received" (pending)
    done = env.post(f"/v1/bookings/{bk}/complete", {"amount": GROSS - 50})
    assert done["status"] == "completed", done
    booking = Booking.objects.get(pk=bk)
    escrow_refund = Refund.objects.get(pk=booking.refund_id)
    assert escrow_refund.status == OperationStatus.PENDING
    # the booking is completed: the merchant refunds 50 more, out of its pending balance
    r = env.http.post("/v1/refunds", json={"payment": booking.payment_id, "amount": 50})
    assert r.status_code in (200, 201), r.text
    merchant_refund = r.json()["id"]
    # the merchant's refund is confirmed first, then the escrow's (beta's webhooks)
    refund_record_outcome(refund_id=merchant_refund, outcome=Outcome.APPROVED, actor="psp:beta")
    _wait(
        lambda: Refund.objects.filter(pk=escrow_refund.id, status=OperationStatus.SUCCEEDED).exists(),
        "escrow refund succeeded",
    )
    assert Refund.objects.get(pk=merchant_refund).status == OperationStatus.SUCCEEDED
    assert_ledger_sound()

    # every booking is closed: nothing may be left in (or owed by) the merchant's escrow
    balance = balance_get(owner=env.merchant.id)
    assert _eur(balance.escrow) == 0
    # kept 9900 of 10000: the merchant bears the fee on what it kept, not a cent more
    assert _eur(balance.pending) == 9900 - (FEE - FEE * 100 // GROSS)
