"""A returned refund out of a closed booking's escrow (review r19b of h19d): payments posts its
refund journal (out of the merchant's escrow) and then, after locking the booking, its reversal
(into the merchant's pending balance, the booking being closed) in one transaction. Racing the
completions of the merchant's other bookings (escrow -> pending, one batch each) and a refund out
of pending, with real threads on PostgreSQL: no deadlock, each journal once, the ledger sound."""

from __future__ import annotations

import time

import pytest

from ledger.models import Journal
from payments.models import Booking, OperationStatus, Refund
from payments.services import payment_create, refund_create
from payments.services.bookings import booking_complete, booking_confirm, booking_create
from payments.services.refunds import refund_record_outcome
from psp_adapters.port import Outcome
from tests.payments.test_concurrency import CARD, _race, merchant_alpha  # noqa: F401  (the fixture)
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = [pytest.mark.django_db(transaction=True)]

ASYNC_REFUND = {**CARD, "card": {**CARD["card"], "number": "4000000000005126"}}  # the refund answers pending


def _booking(merchant, ref: str, card: dict) -> Booking:
    b = booking_create(merchant=merchant, amount=10000, currency="EUR", reference=ref,
                       hold_expires_at=int(time.time()) + 600, payment_method_data=card)  # fmt: skip
    return booking_confirm(merchant=merchant, booking_id=b.id)


def test_a_returned_escrow_refund_racing_the_merchants_completions_and_refunds(merchant_alpha):  # noqa: F811
    for rnd in range(3):
        returned = _booking(merchant_alpha, f"r{rnd}", ASYNC_REFUND)
        done = booking_complete(merchant=merchant_alpha, booking_id=returned.id, amount=6000)
        assert done.status == "completed"
        refund = Refund.objects.get(pk=done.refund_id)
        assert refund.status == OperationStatus.PENDING
        others = [_booking(merchant_alpha, f"o{rnd}{i}", CARD).id for i in range(3)]
        plain = payment_create(merchant=merchant_alpha, amount=1000, currency="EUR", payment_method_data=CARD)

        def run(i: int, refund_id: str = refund.id, others: list = others, plain_id: str = plain.id):
            if i == 0:
                return refund_record_outcome(refund_id=refund_id, outcome=Outcome.DECLINED, returned=True,
                                             actor="psp:alpha")  # fmt: skip
            if i <= len(others):
                return booking_complete(merchant=merchant_alpha, booking_id=others[i - 1]).status
            return refund_create(merchant=merchant_alpha, payment_id=plain_id, amount=100).status

        results = _race(5, run)
        assert results == [None, "completed", "completed", "completed", "succeeded"], results
        r = Refund.objects.get(pk=refund.id)
        assert r.status == OperationStatus.FAILED and r.succeeded_at and r.reversed_at
        for ref in (f"refund:{r.id}", f"refund_reversal:{r.id}"):
            assert Journal.objects.filter(reference=ref).count() == 1
        # the path under test: out of escrow, back into pending (the booking is completed)
        codes = {
            ref: {e.account.code for e in Journal.objects.get(reference=ref).entries.select_related("account")}
            for ref in (f"refund:{r.id}", f"refund_reversal:{r.id}")
        }
        assert "merchant_escrow" in codes[f"refund:{r.id}"] and "merchant_pending" not in codes[f"refund:{r.id}"]
        assert "merchant_pending" in codes[f"refund_reversal:{r.id}"], codes
    assert_ledger_sound()
