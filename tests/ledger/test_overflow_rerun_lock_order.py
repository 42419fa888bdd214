"""Review r19e: ledger_post_batch_atomic's overflow rerun (one journal at a time) against a posting
that locks the same rows in the usual order (real threads, PostgreSQL)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from ledger import services
from ledger.models import Account
from ledger.types import JournalRequest, PostStatus, transfer_lines
from tests.ledger.conftest import make_account
from tests.ledger.test_batch_status_under_lock import _until_waiting

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks under real concurrency: PostgreSQL"),
]

LINE = 2**62 - 1


def test_an_overflow_rerun_takes_its_rows_in_the_usual_order():
    tag = uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    owner = "mer_ol" + tag
    a, b, c, d, full, sink = (make_account(owner, code) for code in ("a", "b", "c", "d", "full", "sink"))
    for n, amount in enumerate((LINE, LINE, 1)):
        services.journal_post(
            reference=f"fill{n}:{tag}", lines=transfer_lines(debit=full, credit=sink, amount=amount), occurred_at=now
        )
    errors: list[BaseException] = []
    outcome: list = []
    held, release = threading.Event(), threading.Event()

    def thread(work):
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 (surfaced to the test)
                errors.append(exc)
            finally:
                connection.close()

        return threading.Thread(target=run)

    def hold_full() -> None:
        with transaction.atomic():
            list(Account.objects.select_for_update().filter(owner=owner, code="full"))
            held.set()
            assert release.wait(60)

    def overflowing_batch() -> None:
        batch = [
            JournalRequest(reference=f"j1:{tag}", lines=transfer_lines(debit=c, credit=d, amount=1), occurred_at=now),
            JournalRequest(reference=f"j2:{tag}", lines=transfer_lines(debit=a, credit=b, amount=1), occurred_at=now),
            JournalRequest(
                reference=f"j3:{tag}", lines=transfer_lines(debit=full, credit=d, amount=1), occurred_at=now
            ),
        ]
        with transaction.atomic():  # a caller's transaction: no retry of a deadlock
            outcome.append(services.journal_post_many(batch, atomic=False))

    def a_then_c() -> None:  # the usual order (id order), slow between its two rows
        with transaction.atomic():
            list(Account.objects.select_for_update().filter(owner=owner, code="a"))
            time.sleep(0.5)
            list(Account.objects.select_for_update().filter(owner=owner, code="c"))

    holder = thread(hold_full)
    holder.start()
    assert held.wait(30)
    t1 = thread(overflowing_batch)
    t1.start()
    _until_waiting(1)
    t2 = thread(a_then_c)
    t2.start()
    _until_waiting(2)
    release.set()
    for th in (holder, t1, t2):
        th.join(60)
    assert not errors, errors
    assert [r.status for r in outcome[0]] == [PostStatus.CREATED, PostStatus.CREATED, PostStatus.OVERFLOW]
