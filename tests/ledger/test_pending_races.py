"""Two-phase journals under real concurrency on PostgreSQL (session 16 review, h16f; found sound):
reservations against a limited account never overdraw it, a post racing the scheduler's expiry
resolves the pending journal exactly once (a post only before `expires_at`), and a journal is
reversed once however many threads try."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from ledger import selectors, services
from ledger.errors import JournalAlreadyReversedError, LimitExceededError, PendingStateError
from ledger.models import Journal, JournalPhase
from ledger.types import AccountKey, AccountType, PostingLine, transfer_lines
from ledger.verify import ledger_verify
from tests.ledger.conftest import make_account
from tests.ledger.test_concurrency import run_threads

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions: PostgreSQL"),
]


def test_concurrent_reservations_never_exceed_a_limited_accounts_balance(owner):
    wallet = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    source = make_account(owner, "source")
    sink = make_account(owner, "sink")
    services.journal_post(
        reference=f"fund:{owner}",
        lines=transfer_lines(debit=source, credit=wallet, amount=100),
        occurred_at=datetime.now(UTC),
    )
    created: list[int] = []
    refused: list[int] = []

    def reserve(i: int) -> None:
        try:
            services.pending_create(
                reference=f"hold:{owner}:{i}",
                occurred_at=datetime.now(UTC),
                lines=transfer_lines(debit=wallet, credit=sink, amount=30),
            )
            created.append(i)
        except LimitExceededError:
            refused.append(i)

    assert run_threads(12, reserve) == []
    assert len(created) == 3 and len(refused) == 9  # 3 x 30 <= 100 < 4 x 30
    balance = selectors.account_balance(key=wallet)
    assert balance.posted == -100 and balance.debits_pending == 90
    assert ledger_verify().ok


@pytest.mark.parametrize("round_", range(3))
def test_a_post_racing_the_expiry_resolves_the_pending_journal_once(owner, round_):
    src = make_account(owner, "src")
    dst = make_account(owner, "dst", type=AccountType.LIABILITY)
    expires_at = datetime.now(UTC) + timedelta(milliseconds=300)
    pending = services.pending_create(
        reference=f"hold:{owner}",
        occurred_at=datetime.now(UTC),
        expires_at=expires_at,
        lines=transfer_lines(debit=src, credit=dst, amount=50),
    )
    outcomes: list[str] = []

    def actor(i: int) -> None:
        # 0: the merchant's post, tried until it is refused; 1: the scheduler's expiry, run until it voids
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if i == 0:
                try:
                    services.pending_post(
                        pending_id=pending.journal_id, reference=f"post:{owner}", occurred_at=datetime.now(UTC)
                    )
                    outcomes.append("post")
                    return
                except PendingStateError:
                    return
            elif services.pending_expire_due(limit=10_000):
                outcomes.append("void")
                return
            time.sleep(0.01 if i else 0.29)

    assert run_threads(2, actor) == []
    resolutions = Journal.objects.filter(pending_id=pending.journal_id)
    assert resolutions.count() == 1
    (resolution,) = resolutions
    assert outcomes in (["post"], ["void"])
    if outcomes == ["post"]:
        assert resolution.phase == JournalPhase.POST_PENDING and resolution.created_at < expires_at
    else:
        assert resolution.phase == JournalPhase.VOID_PENDING
    src_balance = selectors.account_balance(key=src)
    assert src_balance.debits_pending == 0 and src_balance.posted == (50 if outcomes == ["post"] else 0)
    assert ledger_verify().ok


def test_a_journal_is_reversed_once_whatever_threads_try(owner):
    a, b = make_account(owner, "a"), make_account(owner, "b", type=AccountType.LIABILITY)
    lines = (PostingLine.debit(a, 70), PostingLine.credit(b, 70))
    original = services.journal_post(reference=f"orig:{owner}", lines=lines, occurred_at=datetime.now(UTC))
    done: list[str] = []

    def reverse(i: int) -> None:
        try:
            result = services.journal_reverse(
                journal_id=original.journal_id, reference=f"rev:{owner}:{i % 2}", occurred_at=datetime.now(UTC)
            )
            done.append(result.status.value)
        except JournalAlreadyReversedError:
            done.append("already_reversed")

    assert run_threads(8, reverse) == []
    assert Journal.objects.filter(reverses_id=original.journal_id).count() == 1
    assert done.count("created") == 1
    assert set(done) <= {"created", "exists", "already_reversed"}
    assert selectors.account_balance(key=a).posted == 0
    assert ledger_verify().ok


@pytest.mark.parametrize("hot", [False, True], ids=["plain", "hot-only"])
def test_a_pending_journal_posted_and_voided_by_many_threads_at_once_is_resolved_once(owner, hot):
    """s17c: posts (whole and partial) and voids of one pending journal, all at once, resolve it once;
    every other answers pending_already_resolved (the check before the frozen, expiry and limit checks,
    migration 0014, and the unique index when the accounts share no lock: a pending journal on hot
    accounts only, whose posts take any free shard)."""
    from ledger.types import PostStatus

    if hot:
        src, dst = (AccountKey("platform", f"hot_{n}:{owner}", "EUR") for n in "ab")
        for key in (src, dst):
            services.account_get_or_create(key=key, type=AccountType.ASSET, hot=True)
    else:
        src, dst = make_account(owner, "src"), make_account(owner, "dst", type=AccountType.LIABILITY)
    pending = services.pending_create(reference=f"hold:{owner}", occurred_at=datetime.now(UTC),
                                      lines=transfer_lines(debit=src, credit=dst, amount=90))  # fmt: skip
    outcomes: list[str] = []

    def actor(i: int) -> None:
        try:
            if i % 3 == 2:
                services.pending_void(pending_id=pending.journal_id, reference=f"void:{owner}:{i}",
                                      occurred_at=datetime.now(UTC))  # fmt: skip
            else:
                lines = None if i % 3 == 0 else transfer_lines(debit=src, credit=dst, amount=30)
                services.pending_post(pending_id=pending.journal_id, reference=f"post:{owner}:{i}",
                                      occurred_at=datetime.now(UTC), lines=lines)  # fmt: skip
            outcomes.append("resolved")
        except PendingStateError as exc:
            assert exc.status is PostStatus.PENDING_ALREADY_RESOLVED, exc.status
            outcomes.append("already")

    assert run_threads(9, actor) == []
    assert sorted(outcomes) == ["already"] * 8 + ["resolved"]
    (resolution,) = Journal.objects.filter(pending_id=pending.journal_id)
    moved = {JournalPhase.VOID_PENDING: 0, JournalPhase.POST_PENDING: None}[resolution.phase]
    if moved is None:
        moved = 90 if resolution.reference.rsplit(":", 1)[1] in {"0", "3", "6"} else 30
    assert selectors.account_balance(key=src).posted == moved
    assert selectors.account_balance(key=src).debits_pending == 0
    assert ledger_verify().ok
