"""Real threads on PostgreSQL: concurrent payout runs pay once; a paid racing a failed ends in one."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection

from ledger.verify import ledger_verify
from reconciliation.models import Payout, PayoutStatus
from reconciliation.services import (
    payout_mark_failed,
    payout_mark_in_transit,
    payout_mark_paid,
    payout_run,
    payout_settings_update,
    settlement_run,
)
from reconciliation.tasks import payout_run_task, settlement_run_task
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import BANK_ACCOUNT, available, make_payout, post_capture

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def run_threads(targets) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def body(target) -> None:
        try:
            barrier.wait()
            target()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_payout_runs_pay_once():
    merchants = [MerchantFactory(settlement_delay_days=0) for _ in range(3)]
    for m in merchants:
        payout_settings_update(merchant_id=m.id, bank_account=BANK_ACCOUNT, reserve_bps=1000,
                               minimum_payout_amounts={"EUR": 1})
        post_capture(m.id, gross=10_000, fee=300, at=NOW - timedelta(days=1))
    settlement_run(now=NOW)
    assert run_threads([lambda: payout_run(now=NOW)] * 4) == []
    for m in merchants:
        [payout] = Payout.objects.filter(merchant=m)
        assert payout.amount == 9_700 - 970
        assert available(m.id) == 970
    assert ledger_verify().ok


@pytest.mark.django_db(transaction=True)
def test_paid_racing_failed_ends_in_exactly_one_of_them():
    merchant = MerchantFactory(settlement_delay_days=0)
    payout = make_payout(merchant, now=NOW)
    payout_mark_in_transit(payout_id=payout.id)

    def paid():
        try:
            payout_mark_paid(payout_id=payout.id)
        except Exception as exc:  # the loser sees the winner's state
            assert exc.__class__.__name__ == "PayoutStateError"

    def failed():
        try:
            payout_mark_failed(payout_id=payout.id, reason="returned")
        except Exception as exc:
            assert exc.__class__.__name__ == "PayoutStateError"

    assert run_threads([paid, failed]) == []
    final = Payout.objects.get(pk=payout.id)
    assert final.status in (PayoutStatus.PAID, PayoutStatus.FAILED)
    assert available(merchant.id) == (payout.amount if final.status == PayoutStatus.FAILED else 0)
    assert ledger_verify().ok


@pytest.mark.django_db
def test_beat_runs_settlement_then_payouts_daily_and_the_tasks_run():
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["reconciliation-settlement-run"]["task"] == "reconciliation.tasks.settlement_run_task"
    assert schedule["reconciliation-payout-run"]["task"] == "reconciliation.tasks.payout_run_task"
    merchant = MerchantFactory(settlement_delay_days=0)
    payout_settings_update(merchant_id=merchant.id, bank_account=BANK_ACCOUNT, minimum_payout_amounts={"EUR": 1})
    post_capture(merchant.id, gross=1_000, fee=30, at=datetime.now(UTC) - timedelta(days=2))
    assert settlement_run_task.apply().get() >= 1
    assert payout_run_task.apply().get() >= 1
    assert Payout.objects.filter(merchant=merchant, amount=970).exists()
