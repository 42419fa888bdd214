"""The database's clock alone decides when a pending journal has expired (session 18, h18e).

What was wrong: a post of a pending journal was refused as `pending_expired` by the database's clock
(`clock_timestamp()` in ledger_post_batch), but the scheduler's expiry run (`pending_expire_due`)
picked the due journals by the application's clock (`timezone.now()`), and so did the Python engine
(`LEDGER_ENGINE=python`, SQLite) for the post. Web and worker hosts' clocks drift from the database
server's; with the worker's clock ahead, the run voided a hold before its expiry (a merchant's capture
of a hold still valid was refused `pending_already_resolved`, the booking lost); with it behind, a
hold past its expiry kept its reservation (the merchant's `available` stayed net of it and limited
accounts refused postings they could afford) while posts were already refused, and the two engines
answered the same post differently. Now the expiry run and both engines read the database's clock.

The application's clock is moved here by replacing django.utils.timezone.now (Django's, not ours):
the database's clock is the real one. Shared by tests/ledger/test_pending_clock.py (PostgreSQL,
both engines) and tests/ledger/sqlite_embedded_check.py (SQLite)."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from unittest import mock

from django.utils import timezone

from ledger import selectors, services
from ledger.errors import PendingStateError
from ledger.models import Journal
from ledger.types import AccountKey, AccountType, PostStatus, transfer_lines

SKEW = timedelta(minutes=10)


@contextmanager
def app_clock_off_by(skew: timedelta):
    """The application's clock (django.utils.timezone.now) `skew` away from the real one."""
    real_now = timezone.now
    with mock.patch.object(timezone, "now", lambda: real_now() + skew):
        yield


def _hold(tag: str, *, expires_in: timedelta):
    """A limited wallet funded with 1,000 and a hold of 300 on it expiring `expires_in` from now."""
    now = datetime.now(UTC)
    wallet = AccountKey("mer_clk" + tag, "wallet", "EUR")
    services.account_get_or_create(key=wallet, type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    bank = AccountKey("platform", "bank_cash", "EUR")
    services.journal_post(reference=f"fund:{tag}", lines=transfer_lines(debit=bank, credit=wallet, amount=1000),
                          occurred_at=now)  # fmt: skip
    hold = services.pending_create(reference=f"hold:{tag}", lines=transfer_lines(debit=wallet, credit=bank, amount=300),
                                   occurred_at=now, expires_at=now + expires_in)  # fmt: skip
    return wallet, hold.journal_id


def check_an_app_clock_ahead_does_not_expire_a_hold_early() -> None:
    tag = uuid.uuid4().hex[:10]
    wallet, hold = _hold(tag, expires_in=timedelta(minutes=5))  # 5 minutes left by the database's clock
    with app_clock_off_by(SKEW):  # the worker's clock 10 minutes ahead
        services.pending_expire_due()
        assert not Journal.objects.filter(pending_id=hold).exists(), "a hold was voided before its expiry"
        posted = services.pending_post(pending_id=hold, reference=f"capture:{tag}", occurred_at=timezone.now())
    assert posted.created
    assert selectors.account_balance(key=wallet).posted == -700


def check_an_app_clock_behind_expires_a_hold_on_time() -> None:
    tag = uuid.uuid4().hex[:10]
    wallet, hold = _hold(tag, expires_in=-timedelta(minutes=1))  # expired a minute ago
    with app_clock_off_by(-SKEW):  # the worker's clock 10 minutes behind
        try:
            services.pending_post(pending_id=hold, reference=f"capture:{tag}", occurred_at=timezone.now())
        except PendingStateError as exc:
            assert exc.status is PostStatus.PENDING_EXPIRED, exc.status
        else:
            raise AssertionError("a hold past its expiry was posted")
        services.pending_expire_due()
    assert Journal.objects.filter(pending_id=hold, reference=f"expire:hold:{tag}").exists(), "expired hold kept"
    assert selectors.account_balance(key=wallet).debits_pending == 0
