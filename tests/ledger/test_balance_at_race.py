"""account_balance_at() under contention (#4 audit finding 8): a journal's created_at is stamped
after its accounts are locked, so on every account the order of created_at is the order of
versions, and the balance at a time is the balance after the last journal created by then.

The race (as the audit's race2.py): T0 holds account X in an open transaction; T1 posts X -> A and
waits for X (it has not locked A yet); T2 posts B -> A and takes A's next version; T0 commits, T1
takes the version after. Stamped at the start of T1's statement (statement_timestamp(), before the
lock wait), T1's journal was older than T2's although it came after it on A."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from ledger import selectors, services
from ledger.models import Entry, Journal
from ledger.types import AccountKey, JournalRequest, PostingLine, transfer_lines

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks under real concurrency: PostgreSQL"),
]


def _wait_for_lock_waiter(timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                           " AND wait_event_type = 'Lock' AND state = 'active'")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the second posting never waited for the lock")


@pytest.mark.parametrize("path", ["lean", "set_based_batch", "python"])
def test_a_posting_that_waited_for_a_lock_is_stamped_after_the_postings_before_it(path, settings):
    if path == "python":
        settings.LEDGER_ENGINE = "python"
    tag = uuid.uuid4().hex[:12]
    now = datetime.now(UTC)
    x = AccountKey("mer_r" + tag, "merchant_pending", "EUR")  # created first: the lower id, locked first
    a = AccountKey("mer_r" + tag, "merchant_available", "EUR")
    bank, suspense = AccountKey("platform", "bank_cash", "EUR"), AccountKey("platform", "suspense", "EUR")
    services.journal_post(reference=f"s0x:{tag}", lines=transfer_lines(debit=bank, credit=x, amount=1),
                          occurred_at=now)
    services.journal_post(reference=f"s0a:{tag}", lines=transfer_lines(debit=bank, credit=a, amount=1),
                          occurred_at=now)
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def t0() -> None:
        try:
            with transaction.atomic():
                services.journal_post(reference=f"t0:{tag}", occurred_at=now,
                                      lines=transfer_lines(debit=suspense, credit=x, amount=5))
                held.set()
                release.wait(30)
        except BaseException as exc:  # surfaced to the test
            errors.append(exc)
            held.set()
        finally:
            connection.close()

    def t1() -> None:
        try:
            if path == "set_based_batch":
                services.journal_post_many([
                    JournalRequest(f"t1:{tag}", transfer_lines(debit=x, credit=a, amount=100), now),
                    JournalRequest(f"t1b:{tag}", transfer_lines(debit=x, credit=a, amount=7), now),
                ])
            else:
                services.journal_post(reference=f"t1:{tag}", occurred_at=now,
                                      lines=transfer_lines(debit=x, credit=a, amount=100))
        except BaseException as exc:  # surfaced to the test
            errors.append(exc)
        finally:
            connection.close()

    holder = threading.Thread(target=t0)
    holder.start()
    assert held.wait(30)
    waiter = threading.Thread(target=t1)
    waiter.start()
    try:
        _wait_for_lock_waiter()  # T1's statement has begun and waits for X, before locking A
        t2 = services.journal_post(reference=f"t2:{tag}", occurred_at=now,
                                   lines=[PostingLine(bank, 10_000), PostingLine(a, -10_000)])
    finally:
        release.set()
        holder.join(60)
        waiter.join(60)
    assert not errors, errors
    rows = list(Entry.objects.filter(account__owner=a.owner, account__code=a.code).order_by("version")
                .values_list("version", "journal__reference", "journal__created_at", "balance_after"))
    assert [r[1].split(":")[0] for r in rows][:3] == ["s0a", "t2", "t1"], rows
    stamps = [r[2] for r in rows]
    assert stamps == sorted(stamps), rows  # per account: time order = version order
    t2_journal = Journal.objects.get(id=t2.journal_id)
    t1_journal = Journal.objects.get(reference=f"t1:{tag}")
    assert t1_journal.created_at >= t2_journal.created_at
    # the balance as of T2's stamp is the balance right after T2's entry, not T1's
    assert selectors.account_balance_at(key=a, at=t2_journal.created_at) == rows[1][3] == -10_001
    for _version, _ref, stamp, _balance in rows:  # (a batch's journals share one stamp)
        assert selectors.account_balance_at(key=a, at=stamp) == [r[3] for r in rows if r[2] <= stamp][-1]
