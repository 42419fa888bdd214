"""A post or void of a pending journal that is already resolved answers `pending_already_resolved`
(PendingStateError), whatever else is true by then: its accounts frozen, its expiry passed, a
limit its lines would now break (TigerBeetle checks pending_transfer_already_posted/voided before
the expiry and the balances). Shared by tests/ledger/test_pending_resolved_first.py (PostgreSQL,
both engines) and tests/ledger/sqlite_embedded_check.py (SQLite)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from ledger import services
from ledger.errors import PendingStateError
from ledger.models import AccountStatus, Journal
from ledger.types import AccountKey, AccountType, PostStatus, transfer_lines


def _refused_as_already_resolved(call) -> None:
    try:
        call()
    except PendingStateError as exc:
        assert exc.status is PostStatus.PENDING_ALREADY_RESOLVED, exc.status
    else:
        raise AssertionError("a resolved pending journal was resolved again")


def check_a_resolved_pending_journal_answers_already_resolved() -> None:
    tag = uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    src = AccountKey("mer_pr" + tag, "src", "EUR")
    dst = AccountKey("mer_pr" + tag, "dst", "EUR")
    services.account_get_or_create(key=src, type=AccountType.ASSET)
    services.account_get_or_create(key=dst, type=AccountType.LIABILITY)

    # 1. posted, then an account frozen: a second post is refused as resolved, not as frozen
    posted = services.pending_create(
        reference=f"p1:{tag}", lines=transfer_lines(debit=src, credit=dst, amount=50), occurred_at=now
    )
    services.pending_post(pending_id=posted.journal_id, reference=f"post1:{tag}", occurred_at=now)
    services.account_set_status(key=dst, status=AccountStatus.FROZEN)
    _refused_as_already_resolved(
        lambda: services.pending_post(pending_id=posted.journal_id, reference=f"post1b:{tag}", occurred_at=now)
    )
    # the retry of the first post (same reference) is still answered `exists`
    again = services.pending_post(pending_id=posted.journal_id, reference=f"post1:{tag}", occurred_at=now)
    assert again.status is PostStatus.EXISTS
    services.account_set_status(key=dst, status=AccountStatus.ACTIVE)

    # 2. posted before its expiry, asked again after it: resolved, not expired
    soon = datetime.now(UTC) + timedelta(milliseconds=400)
    early = services.pending_create(
        reference=f"p2:{tag}", lines=transfer_lines(debit=src, credit=dst, amount=20), occurred_at=now, expires_at=soon
    )
    services.pending_post(pending_id=early.journal_id, reference=f"post2:{tag}", occurred_at=now)
    while datetime.now(UTC) <= soon + timedelta(milliseconds=50):
        time.sleep(0.05)
    _refused_as_already_resolved(
        lambda: services.pending_post(pending_id=early.journal_id, reference=f"post2b:{tag}", occurred_at=now)
    )
    # the scheduler's void of it answers the same (and is skipped)
    _refused_as_already_resolved(
        lambda: services.pending_void(pending_id=early.journal_id, reference=f"void2:{tag}", occurred_at=now)
    )
    assert Journal.objects.filter(pending_id__in=[posted.journal_id, early.journal_id]).count() == 2
