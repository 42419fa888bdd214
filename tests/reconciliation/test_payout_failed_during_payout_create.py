"""A payout failing while the next payout is being created (session 16, h16f).

What was wrong: `payout_mark_failed` locked only the payout, not the merchant's payout settings row
that `payout_create` (and settlement) hold. A failure committed between the new payout's read of
the available balance and its claim of the unpaid settlement runs gave the new payout the failed
payout's runs without their money: its statement listed transactions it did not pay (its
`carried_in` negative), and the payout that did pay that money back later listed none of them.
Real threads on PostgreSQL; the new payout is paused right after its balance read (the window the
race needs), nothing else is stubbed.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from reconciliation.models import Payout
from reconciliation.selectors import payout_statement
from reconciliation.services import payout_create, payout_mark_failed, payout_mark_in_transit, settlement_run
from reconciliation.services import payouts as payouts_module
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import make_payout, post_capture

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions: PostgreSQL"),
]

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_a_payout_failing_during_the_next_payouts_creation_is_listed_by_the_payout_that_pays_it(monkeypatch):
    merchant = MerchantFactory(settlement_delay_days=0)
    first = make_payout(merchant, gross=10_000, fee=300, now=NOW)  # 9,700
    payout_mark_in_transit(payout_id=first.id, now=NOW)
    first_refs = [line.reference for line in payout_statement(payout=first).lines]
    day2 = NOW + timedelta(days=1)
    second_capture = post_capture(merchant.id, gross=2_000, fee=60, at=NOW + timedelta(hours=1))  # 1,940
    settlement_run(merchant_id=merchant.id, now=day2)

    read, go = threading.Event(), threading.Event()
    real_available = payouts_module._available

    def paused_available(merchant_id: str, currency: str) -> int:
        amount = real_available(merchant_id, currency)
        read.set()
        assert go.wait(30)
        return amount

    monkeypatch.setattr(payouts_module, "_available", paused_available)
    errors: list[BaseException] = []
    created: dict[str, str] = {}

    def in_thread(fn):
        def body() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 (surfaced to the test)
                errors.append(exc)
            finally:
                connection.close()

        return threading.Thread(target=body)

    creator = in_thread(
        lambda: created.update(id=payout_create(merchant_id=merchant.id, currency="EUR", now=day2).payout_id)
    )
    failer = in_thread(lambda: payout_mark_failed(payout_id=first.id, reason="returned", now=day2))
    creator.start()
    assert read.wait(30)
    failer.start()
    time.sleep(0.5)  # the failure commits now, or waits for the payout being created
    go.set()
    creator.join(60)
    failer.join(60)
    assert errors == []
    monkeypatch.setattr(payouts_module, "_available", real_available)

    second = Payout.objects.get(pk=created["id"])
    s2 = payout_statement(payout=second)
    # the second payout lists what it paid: the day-2 capture, and not the failed payout's transactions
    assert [line.reference for line in s2.lines] == [second_capture.reference]
    assert s2.carried_in >= 0 and s2.ties_out

    # the money of the failed payout goes with the next payout, which lists its transactions
    third = Payout.objects.get(
        pk=payout_create(merchant_id=merchant.id, currency="EUR", now=day2 + timedelta(days=1)).payout_id
    )
    s3 = payout_statement(payout=third)
    assert third.amount == first.amount
    assert [line.reference for line in s3.lines] == first_refs
    assert s3.carried_in == 0 and s3.ties_out
