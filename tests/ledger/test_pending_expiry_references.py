"""Review 14c: the scheduler's expiry of pending journals (`pending_expire_due`, Celery
`ledger.tasks.pending_expire_task` every minute)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from ledger import selectors, services
from ledger.models import Journal
from ledger.types import AccountType, transfer_lines
from tests.ledger.conftest import make_account

pytestmark = pytest.mark.django_db


def test_expiry_voids_every_due_pending_journal_whatever_its_reference(owner, now):
    """Every expired pending journal is voided, and one cannot stop the others.

    What happens: `pending_expire_due` voids each with the reference `f"expire:{ref}"[:255]`. A
    reference may be up to 255 characters (engine.MAX_REFERENCE), so two pending journals whose
    references share their first 248 characters get the same void reference: the second void answers
    `reference_conflict` and raises JournalReferenceConflictError, which the loop does not catch
    (it catches only PendingStateError). The task fails, and since it takes the due journals oldest
    expiry first, it fails again at the same journal every minute: no pending journal expiring after
    it is ever voided, and their reservations (a merchant's `available` is net of them; limits count
    them) are held for ever.
    Expected: all three voided, no open pending journal left, the wallet's reservation released.
    Suspected: ledger/services/pending.py `pending_expire_due` (truncated, colliding void reference;
    an error other than PendingStateError ends the whole run)."""
    wallet = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    src = make_account(owner, "src")
    services.journal_post(reference=f"fund:{owner}", lines=transfer_lines(debit=src, credit=wallet, amount=300),
                          occurred_at=now)  # fmt: skip
    long_prefix = f"booking-hold:{owner}:" + "x" * 255
    references = [(long_prefix[:250] + "-a"), (long_prefix[:250] + "-b"), f"short:{owner}"]
    assert all(len(r) <= 255 for r in references)
    for n, reference in enumerate(references):
        services.pending_create(
            reference=reference,
            lines=transfer_lines(debit=wallet, credit=src, amount=100),
            occurred_at=now,
            expires_at=now - timedelta(minutes=10 - n),
        )
    assert selectors.account_balance(key=wallet).debits_pending == 300

    voided = services.pending_expire_due()

    assert voided == 3
    assert not Journal.objects.pending_open().filter(reference__in=references).exists()
    assert selectors.account_balance(key=wallet).debits_pending == 0


def test_a_failing_expiry_is_logged_and_the_others_go_on(owner, now, caplog):
    """One pending journal whose void is refused (here: its void reference is taken by another
    journal, a reference_conflict) is logged, and the pending journals due after it are still voided.
    Also: a long reference's void reference is `expire:sha256:<digest of the whole reference>`."""
    wallet = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    src = make_account(owner, "src")
    services.journal_post(reference=f"fund:{owner}", lines=transfer_lines(debit=src, credit=wallet, amount=300),
                          occurred_at=now)  # fmt: skip
    long_reference = f"hold:{owner}:" + "y" * 250
    references = [f"first:{owner}", long_reference[:255], f"last:{owner}"]
    for n, reference in enumerate(references):
        services.pending_create(reference=reference, lines=transfer_lines(debit=wallet, credit=src, amount=100),
                                occurred_at=now, expires_at=now - timedelta(minutes=10 - n))  # fmt: skip
    # someone else's journal holds the first one's void reference
    services.journal_post(reference=f"expire:first:{owner}", lines=transfer_lines(debit=src, credit=wallet, amount=1),
                          occurred_at=now)  # fmt: skip

    with caplog.at_level("ERROR", logger="payera.ledger"):
        voided = services.pending_expire_due()

    assert voided == 2
    open_refs = set(Journal.objects.pending_open().filter(reference__in=references).values_list("reference", flat=True))
    assert open_refs == {f"first:{owner}"}
    assert any("expiry of pending journal" in r.getMessage() for r in caplog.records), caplog.records
    digest = hashlib.sha256(long_reference[:255].encode()).hexdigest()
    assert Journal.objects.filter(reference=f"expire:sha256:{digest}").exists()
    assert Journal.objects.filter(reference=f"expire:last:{owner}").exists()


def _holds(owner, now, count: int, *, minutes_ago: int = 60):
    """`count` pending journals of 10 on a limited wallet (funded with 1,000), all expired."""
    wallet = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    src = make_account(owner, "src")
    services.journal_post(reference=f"fund:{owner}", lines=transfer_lines(debit=src, credit=wallet, amount=1000),
                          occurred_at=now)  # fmt: skip
    references = [f"hold:{owner}:{n}" for n in range(count)]
    for n, reference in enumerate(references):
        services.pending_create(reference=reference, lines=transfer_lines(debit=wallet, credit=src, amount=10),
                                occurred_at=now, expires_at=now - timedelta(minutes=minutes_ago - n))  # fmt: skip
    return wallet, src, references


def test_one_run_voids_a_backlog_larger_than_its_page(owner, now):
    """After the scheduler (or its worker) was down, every pending journal that expired meanwhile is
    voided by the next run, not `limit` (500) of them a minute.

    What was wrong: `pending_expire_due` voided the first `limit` due journals and returned. A
    backlog of 5,000 expired holds took ten minutes to clear, and until then each held its
    reservation: the merchant's `available` stayed net of it and the limits kept counting it, so
    postings the merchant could afford were refused with `exceeds_credits`. Now it goes on, page
    after page, until nothing due is left (or its time budget, under the task's one minute, is spent)."""
    wallet, _, references = _holds(owner, now, 7)
    assert selectors.account_balance(key=wallet).debits_pending == 70

    voided = services.pending_expire_due(limit=3)

    assert voided == 7
    assert not Journal.objects.pending_open().filter(reference__in=references).exists()
    assert selectors.account_balance(key=wallet).debits_pending == 0


def test_expiries_that_keep_failing_do_not_hold_up_the_ones_due_after_them(owner, now, caplog):
    """`limit` journals whose void fails every time (here their void references are taken) at the head
    of the due list do not stop the expiry of the journals due after them.

    What was wrong: each run took the first `limit` due journals, oldest expiry first: the failing
    ones came back first in every run, filled the page, and no journal due after them was ever
    voided (their reservations held for ever). Now a run walks past them (keyset on expiry and id)."""
    wallet, src, references = _holds(owner, now, 3)
    for reference in references[:2]:  # someone else's journals hold the first two void references
        services.journal_post(reference=f"expire:{reference}", lines=transfer_lines(debit=src, credit=wallet, amount=1),
                              occurred_at=now)  # fmt: skip

    with caplog.at_level("ERROR", logger="payera.ledger"):
        voided = [services.pending_expire_due(limit=2) for _ in range(3)]

    assert voided[0] == 1 and voided[1:] == [0, 0]
    open_refs = set(Journal.objects.pending_open().filter(reference__in=references).values_list("reference", flat=True))
    assert open_refs == set(references[:2])
    assert Journal.objects.filter(reference=f"expire:{references[2]}").exists()


def test_a_run_stops_at_its_time_budget(owner, now):
    """A run never goes on past its budget (the next one, a minute later, carries on)."""
    _, _, references = _holds(owner, now, 4)
    assert services.pending_expire_due(limit=1, budget_seconds=0) == 1
    assert Journal.objects.pending_open().filter(reference__in=references).count() == 3
    assert services.pending_expire_due(limit=2) == 3
