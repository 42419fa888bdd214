"""Lookups by booking instant (`created_at`) at exact boundaries (session 18, h18e).

What was wrong (SQLite, the embedded default): a journal's `created_at` is stamped by the database
as text with milliseconds ('2026-12-07 17:32:09.183'), while Django writes a datetime parameter as
'2026-12-07 17:32:09.183000' (or without a fraction at a whole second), and SQLite compares them as
text: the stamp sorts *below* the parameter of the same instant. `balance_transaction_page`'s cursor
(`created_at < cursor's created_at`) then took the cursor entry and every entry booked in its
millisecond again: `GET /v1/balance_transactions?starting_after=` answered the same page for ever
with `has_more: true`, so a merchant's sync never ended. `account_balance_at(at=t)` at a whole second
left out a journal stamped at t.000. Now the SQLite lookups compare the stamp's own text against
the instant written the same way (at or before: the millisecond at or below it; before: the
millisecond at or above it). Shared by tests/ledger/test_booked_at.py (PostgreSQL, both engines) and
tests/ledger/sqlite_embedded_check.py (SQLite)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from ledger import selectors, services
from ledger.models import Entry, Journal
from ledger.types import Accounts, JournalRequest, transfer_lines


def check_a_cursor_walk_lists_every_entry_once() -> None:
    owner = "mer_bk" + uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    bank, pending = Accounts.bank_cash("EUR"), Accounts.merchant_pending(owner, "EUR")
    # a batch (journals booked in one millisecond on SQLite, one stamp on PostgreSQL) and single postings
    services.journal_post_many([
        JournalRequest(f"b{n}:{owner}", transfer_lines(debit=bank, credit=pending, amount=10 + n), now)
        for n in range(5)
    ])  # fmt: skip
    for n in range(3):
        services.journal_post(reference=f"s{n}:{owner}", lines=transfer_lines(debit=bank, credit=pending, amount=n + 1),
                              occurred_at=now)  # fmt: skip
    expected = set(Entry.objects.filter(account__owner=owner).values_list("id", flat=True))
    assert len(expected) == 8
    deadline = time.monotonic() + 10  # the first page lists what is booked before the horizon
    while selectors.balance_transaction_page(owner=owner, limit=100)[0].__len__() < 8:
        assert time.monotonic() < deadline, "entries never listed"
        time.sleep(0.05)

    seen: list[int] = []
    after = None
    for _ in range(10):  # 8 entries, 3 a page: 3 pages
        rows, more = selectors.balance_transaction_page(owner=owner, limit=3, starting_after=after)
        seen += [row.id for row in rows]
        if not more:
            break
        after = rows[-1].id
    else:
        raise AssertionError(f"the walk never ended: {seen[:20]}")
    assert len(seen) == len(set(seen)) == 8 and set(seen) == expected, seen


def check_a_balance_at_an_instant_counts_the_journals_booked_then() -> None:
    owner = "mer_ba" + uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    bank, pending = Accounts.bank_cash("EUR"), Accounts.merchant_pending(owner, "EUR")
    result = services.journal_post(reference=f"one:{owner}", lines=transfer_lines(debit=bank, credit=pending, amount=7),
                                   occurred_at=now)  # fmt: skip
    booked = Journal.objects.get(id=result.journal_id).created_at
    assert selectors.account_balance_at(key=pending, at=booked) == -7  # at its instant: counted
    assert selectors.account_balance_at(key=pending, at=booked + timedelta(microseconds=1)) == -7
    assert selectors.account_balance_at(key=pending, at=booked - timedelta(microseconds=1)) == 0
    # at a whole second: a journal stamped at its first millisecond is counted
    whole = booked.replace(microsecond=0)
    counted = -7 if booked == whole else 0
    assert selectors.account_balance_at(key=pending, at=whole) == counted
