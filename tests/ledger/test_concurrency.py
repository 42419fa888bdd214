"""Real threads, real PostgreSQL connections, real commits."""

import random
import threading
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from ledger import engine, selectors, services
from ledger.errors import LimitExceededError
from ledger.types import AccountKey, Accounts, AccountType, PostingLine, PostStatus, transfer_lines
from ledger.verify import ledger_verify
from tests.ledger.conftest import make_account

pytestmark = pytest.mark.django_db(transaction=True)


def run_threads(n: int, target) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # surfaced to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def test_16_writers_among_10_accounts_totals_exact_no_deadlock(owner):
    keys = [make_account(owner, f"acct{i}") for i in range(10)]
    expected: dict[AccountKey, int] = defaultdict(int)
    lock = threading.Lock()
    per_thread = 60

    def writer(t: int) -> None:
        rng = random.Random(t)
        now = datetime.now(UTC)
        for n in range(per_thread):
            # multi-leg journals over 2..4 accounts, in random order: the engine must order the locks
            chosen = rng.sample(keys, rng.randint(2, 4))
            amounts = [rng.randint(1, 1000) for _ in chosen[1:]]
            lines = [PostingLine(k, a) for k, a in zip(chosen[1:], amounts, strict=True)]
            lines.append(PostingLine(chosen[0], -sum(amounts)))
            rng.shuffle(lines)
            if n % 10 == 0:  # sometimes a batch of two
                from ledger.types import JournalRequest

                reqs = [
                    JournalRequest(reference=f"w:{owner}:{t}:{n}:{b}", lines=tuple(lines), occurred_at=now)
                    for b in range(2)
                ]
                results = services.journal_post_many(reqs)
                assert all(r.status is PostStatus.CREATED for r in results)
                times = 2
            else:
                services.journal_post(reference=f"w:{owner}:{t}:{n}", lines=lines, occurred_at=now)
                times = 1
            with lock:
                for line in lines:
                    expected[line.account] += line.amount * times

    retries = engine.stats["retries"]
    errors = run_threads(16, writer)
    assert errors == []
    assert engine.stats["retries"] == retries, "a deadlock happened (and was retried)"
    for key in keys:
        assert selectors.account_balance(key=key).posted == expected[key], key
    assert sum(selectors.account_balance(key=k).posted for k in keys) == 0
    report = ledger_verify()
    assert report.ok, report.problems


def test_50_concurrent_withdrawals_from_an_account_that_affords_10(owner):
    wallet = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    sink = make_account(owner, "sink")
    services.journal_post(
        reference=f"fund:{owner}",
        lines=transfer_lines(debit=sink, credit=wallet, amount=100),
        occurred_at=datetime.now(UTC),
    )
    outcomes: Counter = Counter()
    lock = threading.Lock()

    def withdraw(i: int) -> None:
        try:
            services.journal_post(
                reference=f"wd:{owner}:{i}",
                lines=transfer_lines(debit=wallet, credit=sink, amount=10),
                occurred_at=datetime.now(UTC),
            )
            outcome = "ok"
        except LimitExceededError:
            outcome = "refused"
        with lock:
            outcomes[outcome] += 1

    assert run_threads(50, withdraw) == []
    assert outcomes == {"ok": 10, "refused": 40}
    balance = selectors.account_balance(key=wallet)
    assert balance.posted == 0 and balance.version == 11
    assert ledger_verify().ok


def test_same_reference_from_16_threads_posts_once(owner):
    lines = transfer_lines(
        debit=Accounts.merchant_pending(owner, "EUR"), credit=Accounts.merchant_available(owner, "EUR"), amount=7
    )
    statuses: list[PostStatus] = []

    def post(i: int) -> None:
        statuses.append(
            services.journal_post(reference=f"once:{owner}", lines=lines, occurred_at=datetime.now(UTC)).status
        )

    assert run_threads(16, post) == []
    assert Counter(statuses) == {PostStatus.CREATED: 1, PostStatus.EXISTS: 15}
    assert selectors.balance_get(owner=owner).available[0].amount == 7


def test_16_writers_on_one_hot_account(owner):
    currency = "XTS"  # ISO 4217's test currency: a hot account of its own
    retries = engine.stats["retries"]

    def writer(t: int) -> None:
        for n in range(25):
            merchant = f"{owner}{t % 4}"
            services.journal_post(
                reference=f"h:{owner}:{t}:{n}",
                lines=(
                    PostingLine.debit(Accounts.merchant_pending(merchant, currency), 10),
                    PostingLine.credit(Accounts.fee_revenue(currency), 10),
                ),
                occurred_at=datetime.now(UTC),
            )

    assert run_threads(16, writer) == []
    assert engine.stats["retries"] == retries
    assert selectors.account_balance(key=Accounts.fee_revenue(currency)).posted == -16 * 25 * 10
    report = ledger_verify()
    assert report.ok, report.problems


def test_concurrent_post_and_void_of_one_pending_resolve_it_once(owner):
    src, dst = Accounts.merchant_available(owner, "EUR"), Accounts.payouts_in_transit("EUR")
    services.journal_post(
        reference=f"fund:{owner}",
        lines=transfer_lines(debit=Accounts.bank_cash("EUR"), credit=src, amount=100),
        occurred_at=datetime.now(UTC),
    )
    p = services.pending_create(
        reference=f"p:{owner}", lines=transfer_lines(debit=src, credit=dst, amount=60), occurred_at=datetime.now(UTC)
    )
    ok: list[str] = []

    def resolve(i: int) -> None:
        from ledger.errors import PendingStateError

        try:
            if i % 2:
                services.pending_post(
                    pending_id=p.journal_id, reference=f"post:{owner}:{i}", occurred_at=datetime.now(UTC)
                )
                ok.append("post")
            else:
                services.pending_void(
                    pending_id=p.journal_id, reference=f"void:{owner}:{i}", occurred_at=datetime.now(UTC)
                )
                ok.append("void")
        except PendingStateError:
            pass

    assert run_threads(8, resolve) == []
    assert len(ok) == 1
    bal = selectors.account_balance(key=src)
    assert bal.debits_pending == 0 and bal.posted == (-40 if ok == ["post"] else -100)
    assert ledger_verify().ok


def test_batch_losing_a_reference_race_is_rerun_journal_by_journal(owner):
    """A set-based batch looks references up once, under its account locks, and inserts its journals
    at the end. A transaction that holds the same references uncommitted on other accounts (the hot
    shards, or accounts the batch does not touch) is invisible to that lookup: the batch's INSERT
    waits for it, skips the references it committed, and the batch is rerun journal by journal,
    answering conflict and exists as a single posting would."""
    from ledger.types import JournalRequest

    now = datetime.now(UTC)
    a, b, c, d = (make_account(owner, f"r{i}") for i in range(4))
    hot = (
        PostingLine.debit(Accounts.psp_receivable("alpha", "XTS"), 3),
        PostingLine.credit(Accounts.fee_revenue("XTS"), 3),
    )
    services.journal_post(reference=f"race:{owner}:warm", lines=hot, occurred_at=now)  # the hot accounts exist
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic():
                services.journal_post_many(
                    [
                        JournalRequest(
                            reference=f"race:{owner}:1",
                            lines=transfer_lines(debit=a, credit=b, amount=5),
                            occurred_at=now,
                        ),
                        JournalRequest(reference=f"race:{owner}:2", lines=hot, occurred_at=now),
                    ]
                )
                held.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(30)
    threading.Timer(1.0, release.set).start()  # commits while the batch below waits on its rows
    results = services.journal_post_many(
        [
            JournalRequest(
                reference=f"race:{owner}:0", lines=transfer_lines(debit=c, credit=d, amount=1), occurred_at=now
            ),
            JournalRequest(
                reference=f"race:{owner}:1", lines=transfer_lines(debit=c, credit=d, amount=5), occurred_at=now
            ),
            JournalRequest(reference=f"race:{owner}:2", lines=hot, occurred_at=now),
        ],
        atomic=False,
    )
    thread.join(30)
    assert release.is_set()
    assert [r.status for r in results] == [PostStatus.CREATED, PostStatus.REFERENCE_CONFLICT, PostStatus.EXISTS]
    assert selectors.account_balance(key=d).posted == -1
    assert selectors.account_balance(key=b).posted == -5
    assert selectors.account_balance(key=Accounts.fee_revenue("XTS")).posted == -6
    report = ledger_verify()
    assert report.ok, report.problems
