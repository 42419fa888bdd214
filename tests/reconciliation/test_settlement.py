"""Settlement: pending -> available for funds older than the merchant's settlement delay."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from ledger import selectors as ledger_selectors
from ledger.verify import ledger_verify
from reconciliation.models import SettlementItem, SettlementRun, SettlementRunStatus
from reconciliation.services import settlement_cutoff, settlement_run
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import available, pending, post_capture, post_refund

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def test_cutoff_is_end_of_day_today_minus_delay():
    assert settlement_cutoff(now=NOW, delay_days=2) == (
        datetime(2026, 11, 21).date(), datetime(2026, 11, 22, tzinfo=UTC)
    )
    assert settlement_cutoff(now=NOW, delay_days=0)[1] == datetime(2026, 11, 24, tzinfo=UTC)


@pytest.mark.django_db
def test_settlement_moves_exactly_the_funds_older_than_the_delay():
    merchant = MerchantFactory(settlement_delay_days=2)
    old = [post_capture(merchant.id, gross=10_000, fee=300, at=days_ago(5)),
           post_capture(merchant.id, gross=5_000, fee=150, at=datetime(2026, 11, 21, 23, 59, tzinfo=UTC))]
    refund_old = post_refund(merchant.id, amount=2_000, at=days_ago(4))
    young = [post_capture(merchant.id, gross=7_000, fee=210, at=datetime(2026, 11, 22, 0, 0, tzinfo=UTC)),
             post_capture(merchant.id, gross=1_000, fee=30, at=days_ago(0.1))]
    other = MerchantFactory(settlement_delay_days=2)
    post_capture(other.id, gross=999, fee=9, at=days_ago(10))

    [outcome] = settlement_run(merchant_id=merchant.id, now=NOW)

    expected = sum(p.net for p in old) + refund_old.net
    assert outcome.status == SettlementRunStatus.SETTLED and outcome.created
    assert outcome.amount == expected
    assert available(merchant.id) == expected
    assert pending(merchant.id) == sum(p.net for p in young)
    run = SettlementRun.objects.get(pk=outcome.run_id)
    assert run.journal_reference == f"settlement:{merchant.id}:EUR:2026-11-21"
    assert {i.journal_reference for i in run.items.all()} == {p.reference for p in [*old, refund_old]}
    assert available(other.id) == 0  # only the merchant asked for
    journal = ledger_selectors.journal_get(reference=run.journal_reference)
    assert journal.kind == "settlement"
    assert ledger_verify().ok


@pytest.mark.django_db
def test_settlement_twice_moves_money_once_and_the_next_day_picks_up_the_rest():
    merchant = MerchantFactory(settlement_delay_days=1)
    a = post_capture(merchant.id, gross=10_000, fee=300, at=days_ago(3))
    b = post_capture(merchant.id, gross=2_000, fee=60, at=NOW)

    first = settlement_run(now=NOW)
    again = settlement_run(now=NOW + timedelta(hours=5))
    mine = [o for o in first if o.merchant_id == merchant.id]
    assert [o.amount for o in mine] == [a.net]
    assert [o.created for o in again if o.merchant_id == merchant.id] == [False]
    assert available(merchant.id) == a.net

    late = post_capture(merchant.id, gross=500, fee=15, at=days_ago(6))  # posted late, occurred long ago
    [next_day] = settlement_run(merchant_id=merchant.id, now=NOW + timedelta(days=1))
    assert next_day.amount == b.net + late.net
    assert available(merchant.id) == a.net + b.net + late.net and pending(merchant.id) == 0
    assert SettlementItem.objects.filter(merchant=merchant).count() == 3
    assert ledger_verify().ok


@pytest.mark.django_db
def test_refunds_exceeding_captures_are_carried_forward_never_moved_negative():
    merchant = MerchantFactory(settlement_delay_days=0)
    cap = post_capture(merchant.id, gross=1_000, fee=30, at=days_ago(2))
    settlement_run(merchant_id=merchant.id, now=days_ago(1))
    assert available(merchant.id) == cap.net
    refund = post_refund(merchant.id, amount=1_000, at=days_ago(0.5))  # more than what is still pending (0)
    chargeback = post_refund(merchant.id, amount=200, at=days_ago(0.5), kind="chargeback")

    [carried] = settlement_run(merchant_id=merchant.id, now=NOW)
    assert carried.status == SettlementRunStatus.CARRIED_FORWARD
    assert carried.amount == 0 and carried.carried_amount == refund.net + chargeback.net
    assert pending(merchant.id) == -1_200 and available(merchant.id) == cap.net  # pending negative, kept there

    later = post_capture(merchant.id, gross=2_000, fee=60, at=NOW + timedelta(hours=1))
    [settled] = settlement_run(merchant_id=merchant.id, now=NOW + timedelta(days=1))
    assert settled.amount == later.net + refund.net + chargeback.net  # the carried negative nets out
    assert pending(merchant.id) == 0
    run = SettlementRun.objects.get(pk=settled.run_id)
    assert {i.journal_reference for i in run.items.all()} == {later.reference, refund.reference, chargeback.reference}
    assert ledger_verify().ok


@pytest.mark.django_db
def test_run_settlement_command_json():
    merchant = MerchantFactory(settlement_delay_days=0)
    cap = post_capture(merchant.id, gross=3_000, fee=90, at=days_ago(400))
    out = StringIO()
    call_command("run_settlement", "--merchant", merchant.id, "--json", stdout=out)
    body = json.loads(out.getvalue())
    assert body["moved"] == {"EUR": cap.net}
    assert body["runs"][0]["merchant"] == merchant.id and body["runs"][0]["status"] == "settled"
    out = StringIO()
    call_command("run_settlement", "--merchant", merchant.id, "--json", stdout=out)
    assert json.loads(out.getvalue())["moved"] == {"EUR": 0}


@pytest.mark.django_db(transaction=True)
def test_concurrent_settlement_runs_move_money_once():
    merchants = [MerchantFactory(settlement_delay_days=1) for _ in range(3)]
    expected = {}
    for m in merchants:
        caps = [post_capture(m.id, gross=1_000 + i, fee=30, at=days_ago(2 + i)) for i in range(5)]
        caps.append(post_capture(m.id, gross=1_000, fee=30, at=days_ago(2), currency="USD"))
        expected[m.id] = sum(c.net for c in caps[:5])
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def body() -> None:
        try:
            barrier.wait()
            settlement_run(now=NOW)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=body) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    for m in merchants:
        assert available(m.id) == expected[m.id]
        assert available(m.id, "USD") == 970
        assert pending(m.id) == 0
        assert SettlementRun.objects.filter(merchant=m, status="settled").count() == 2
    assert ledger_verify().ok
