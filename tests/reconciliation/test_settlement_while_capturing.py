"""Settlement runs for one merchant while its payments are being captured and refunded, in two
currencies, on real threads on PostgreSQL (session 16 review, h16f; found sound): every merchant
pending entry is settled at most once, what moved to available is exactly the sum of the settled
entries, the rest is still pending, and each currency only moves its own money."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import Sum

from ledger.verify import ledger_verify
from reconciliation.models import SettlementItem, SettlementRun
from reconciliation.services import settlement_run
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import available, pending, post_capture, post_refund

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions: PostgreSQL"),
]

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_settling_while_captures_and_refunds_commit_moves_each_entry_once():
    merchant = MerchantFactory(settlement_delay_days=1)
    posted: dict[str, int] = {"EUR": 0, "USD": 0}
    lock = threading.Lock()
    errors: list[BaseException] = []
    stop = threading.Event()

    def capturer(currency: str) -> None:
        try:
            for i in range(40):
                # half old enough to settle today, half too young; every fifth a refund
                at = NOW - timedelta(days=3 if i % 2 else 0, minutes=i)
                if i % 5 == 4:
                    net = post_refund(merchant.id, amount=50, at=at, currency=currency).net
                else:
                    net = post_capture(merchant.id, gross=1_000 + i, fee=30, at=at, currency=currency).net
                with lock:
                    posted[currency] += net
        except BaseException as exc:  # noqa: BLE001 (surfaced to the test)
            errors.append(exc)
        finally:
            connection.close()

    def settler(offset_days: int) -> None:
        try:
            while not stop.is_set():
                settlement_run(merchant_id=merchant.id, now=NOW + timedelta(days=offset_days))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    capturers = [threading.Thread(target=capturer, args=(c,)) for c in ("EUR", "USD")]
    settlers = [threading.Thread(target=settler, args=(d,)) for d in (0, 0, 1)]
    for t in capturers + settlers:
        t.start()
    for t in capturers:
        t.join(120)
    stop.set()
    for t in settlers:
        t.join(120)
    assert errors == []

    for currency in ("EUR", "USD"):
        settled = SettlementItem.objects.filter(merchant=merchant, currency=currency).aggregate(s=Sum("amount"))["s"]
        assert available(merchant.id, currency) == settled
        assert pending(merchant.id, currency) + available(merchant.id, currency) == posted[currency]
        moved = SettlementRun.objects.filter(merchant=merchant, currency=currency).aggregate(s=Sum("amount"))["s"]
        assert moved == settled
    # one run per cutoff date and currency, whatever ran
    assert SettlementRun.objects.filter(merchant=merchant).count() <= 4

    # a final run of a later day settles everything that is left
    settlement_run(merchant_id=merchant.id, now=NOW + timedelta(days=5))
    for currency in ("EUR", "USD"):
        assert pending(merchant.id, currency) == 0
        assert available(merchant.id, currency) == posted[currency]
    assert ledger_verify().ok
