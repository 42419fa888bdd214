"""Review 14c: freezing an account while a batch posting waits for it (real threads, real PostgreSQL)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from ledger import services
from ledger.errors import AccountFrozenError
from ledger.models import Account, AccountStatus, Journal
from ledger.types import JournalRequest, transfer_lines
from tests.ledger.conftest import make_account

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks under real concurrency: PostgreSQL"),
]


def _waiting_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND state = 'active'"
        )
        return cursor.fetchone()[0]


def _until_waiting(n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _waiting_backends() >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {n} backends waited for a lock")


def _batch_behind(change, refusal: type[Exception]) -> tuple[str, list, list]:
    """Stage a batch that reads account A, then waits for A behind `change(a)` (itself waiting
    behind a transaction T0 that holds A), and gets A once T0 ended and the change committed. The
    batch posts two journals debiting A to B; `refusal` is the answer it may give. Returns the
    journals' reference tag, the batch's outcome (its results or the refusal) and any other error."""
    tag = uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    a = make_account("mer_a" + tag, "wallet")
    b = make_account("mer_b" + tag, "wallet")
    errors: list[BaseException] = []
    outcome: list = []
    held, release = threading.Event(), threading.Event()

    def in_thread(work):
        def run() -> None:
            try:
                work()
            except refusal as exc:
                outcome.append(exc)
            except BaseException as exc:  # noqa: BLE001 (surfaced to the test)
                errors.append(exc)
            finally:
                connection.close()

        return threading.Thread(target=run)

    def hold_a() -> None:
        with transaction.atomic():
            list(Account.objects.select_for_update().filter(owner=a.owner, code=a.code))
            held.set()
            assert release.wait(60)

    def post_batch() -> None:
        outcome.append(services.journal_post_many([
            JournalRequest(reference=f"batch:{tag}:{n}", lines=transfer_lines(debit=a, credit=b, amount=10),
                           occurred_at=now)
            for n in range(2)
        ]))  # fmt: skip

    holder = in_thread(hold_a)
    holder.start()
    assert held.wait(30)
    changer = in_thread(lambda: change(a))
    changer.start()
    _until_waiting(1)  # the change waits for A
    poster = in_thread(post_batch)
    poster.start()
    _until_waiting(2)  # the batch has read A and waits for A behind the change
    release.set()
    for thread in (holder, changer, poster):
        thread.join(60)
    return tag, outcome, errors


def test_a_batch_that_waited_behind_a_freeze_is_refused():
    """A posting that gets an account's lock after a freeze of it committed must answer `account_frozen`.

    What happens: `ledger_post_batch` (journal_post_many, pending_post, pending_void, and any single
    journal after a 'retry') reads each account's status, limit flags and shard count with a plain
    SELECT before it locks the rows, and never reads the status again under the lock. A freeze
    (`account_set_status`, or `ledger_rebuild` freezing an account whose entries breach its limit)
    that commits while the posting waits for the row is therefore missed: the batch posts to the frozen
    account. (`ledger_post_one`, the lean path, reads the status from the locked row and refuses.)
    Here: T0 holds account A; a freeze of A waits for it; a batch of two journals debiting A reads
    A as active and waits behind the freeze; T0 ends, the freeze commits, the batch takes A and posts.
    Expected: AccountFrozenError, nothing posted. Suspected: ledger/sql/postgresql.sql
    `ledger_post_batch`, the account resolution (`s_frozen` from the unlocked read) versus the lock
    query, which loads balances but not `status`."""
    tag, outcome, errors = _batch_behind(
        lambda a: services.account_set_status(key=a, status=AccountStatus.FROZEN), AccountFrozenError
    )
    assert errors == []
    assert Account.objects.get(owner="mer_a" + tag, code="wallet", parent=None).status == AccountStatus.FROZEN
    posted = Journal.objects.filter(reference__startswith=f"batch:{tag}:").count()
    assert isinstance(outcome[0], AccountFrozenError) and posted == 0, (
        f"the batch posted {posted} journal(s) to an account frozen before it got the account: {outcome[0]}"
    )


def test_a_batch_that_waited_behind_a_limit_flag_change_checks_the_new_flag():
    """The limit flags, too, are read from the locked rows (ledger_post_batch, migration 0012).

    T0 holds account A (balance 0, no limit); an UPDATE setting A's `debits_must_not_exceed_credits`
    waits for it; a batch of two journals debiting A (an overdraft once the flag holds) reads A and
    waits behind the UPDATE; T0 ends, the flag commits, the batch takes A. Before migration 0012 the
    batch checked the flag it had read before the lock (off) and its projection UPDATE then failed the
    row's CHECK (an IntegrityError instead of a status). Expected: LimitExceededError, nothing posted."""
    from ledger.errors import LimitExceededError

    def limit(a) -> None:
        Account.objects.filter(owner=a.owner, code=a.code, parent=None).update(debits_must_not_exceed_credits=True)

    tag, outcome, errors = _batch_behind(limit, LimitExceededError)
    assert errors == [], errors
    posted = Journal.objects.filter(reference__startswith=f"batch:{tag}:").count()
    assert isinstance(outcome[0], LimitExceededError) and posted == 0, (outcome, posted)
