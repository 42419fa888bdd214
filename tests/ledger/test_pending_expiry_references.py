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

    voided = services.pending_expire_due(now=now)

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
        voided = services.pending_expire_due(now=now)

    assert voided == 2
    open_refs = set(Journal.objects.pending_open().filter(reference__in=references).values_list("reference", flat=True))
    assert open_refs == {f"first:{owner}"}
    assert any("expiry of pending journal" in r.getMessage() for r in caplog.records), caplog.records
    digest = hashlib.sha256(long_reference[:255].encode()).hexdigest()
    assert Journal.objects.filter(reference=f"expire:sha256:{digest}").exists()
    assert Journal.objects.filter(reference=f"expire:last:{owner}").exists()
