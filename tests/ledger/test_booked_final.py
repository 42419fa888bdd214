"""Review 14c (fixed by fix14e): a balance as of a past instant, and a statement period, once final
(`ledger.selectors.booked_final_before()`), never change. A journal is stamped (`created_at`) inside
its posting and becomes visible when its transaction commits, possibly later (docs/ledger.md "Known
limits"): the reviewer's test showed a balance as of a past instant changing. What is guaranteed now
is that such an instant is not reported final while a transaction that may still book before it is
open, and that once final it does not change. (Real threads, real PostgreSQL.)"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from ledger import selectors, services
from ledger.types import Accounts, PostingLine
from reconciliation.statements import merchant_statement

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent commits: PostgreSQL"),
]


def _capture(merchant_id: str, amount: int, currency: str = "EUR") -> str:
    reference = f"capture:{uuid.uuid4().hex}"
    services.journal_post(
        reference=reference,
        kind="capture",
        lines=(
            PostingLine.debit(Accounts.psp_receivable("alpha", currency), amount),
            PostingLine.credit(Accounts.merchant_pending(merchant_id, currency), amount),
        ),
        occurred_at=datetime.now(UTC),
    )
    return reference


def test_a_balance_as_of_an_instant_is_final_only_once_every_transaction_open_then_has_ended(make_merchant_client):
    merchant, _ = make_merchant_client()
    receivable = Accounts.psp_receivable("alpha", "EUR")
    pending = Accounts.merchant_pending(merchant.id, "EUR")
    _capture(merchant.id, 100)
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def capture_in_a_transaction() -> None:
        try:
            with transaction.atomic():
                _capture(merchant.id, 500)
                held.set()
                assert release.wait(60)
        except BaseException as exc:  # noqa: BLE001 (surfaced to the test)
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=capture_in_a_transaction)
    thread.start()
    assert held.wait(30)
    time.sleep(0.05)
    at = datetime.now(UTC)
    time.sleep(0.05)
    before = (selectors.account_balance_at(key=pending, at=at), selectors.account_balance_at(key=receivable, at=at))
    # a journal stamped before `at` is still uncommitted: `at` is not final, and the statement of a
    # period ending at `at` says so
    assert selectors.booked_final_before() < at
    assert not merchant_statement(merchant_id=merchant.id, start=at - timedelta(days=1), end=at).final
    release.set()
    thread.join(60)
    assert errors == []

    # the late commit did change the balance as of `at` (why `final` matters) ...
    after = (selectors.account_balance_at(key=pending, at=at), selectors.account_balance_at(key=receivable, at=at))
    assert after[0] == before[0] - 500  # (a liability: credits are negative)
    # ... and now `at` is final: nothing open can book before it any more
    assert selectors.booked_final_before() > at
    statement = merchant_statement(merchant_id=merchant.id, start=at - timedelta(days=1), end=at)
    assert statement.final

    # later postings, committed at once or after a while, never change it again
    late: list[BaseException] = []

    def another_late_capture() -> None:
        try:
            with transaction.atomic():
                _capture(merchant.id, 70)
                time.sleep(0.2)
        except BaseException as exc:  # noqa: BLE001
            late.append(exc)
        finally:
            connection.close()

    other = threading.Thread(target=another_late_capture)
    other.start()
    _capture(merchant.id, 30)
    other.join(60)
    assert late == []
    again = (selectors.account_balance_at(key=pending, at=at), selectors.account_balance_at(key=receivable, at=at))
    assert again == after
    closing = {(s.currency, s.balance): s.closing for s in statement.sections}
    reread = merchant_statement(merchant_id=merchant.id, start=at - timedelta(days=1), end=at)
    assert {(s.currency, s.balance): s.closing for s in reread.sections} == closing == {("EUR", "pending"): 600}
