"""`GET /v1/balance_transactions` in an order no later commit can slip into (session 16, h16f).

What was wrong: the list was ordered by entry id, newest first, and showed every committed entry.
An entry's id (and its journal's `created_at`) is taken inside the posting, which commits with the
poster's transaction, possibly later: a payment's capture posted inside a transaction that was
still open when another capture committed got the lower id, and so appeared *below* entries a
merchant had already listed. A merchant that walked the list to its end and later walked it again
down to the newest entry it had seen (what `starting_after` cursors are for) never saw it: money
missing from its books. Real threads, real PostgreSQL: one capture held open in a transaction while
another (a booking's, into escrow) commits and the merchant lists.

Now the list shows only entries booked before `booked_final_before()` (nothing can be booked before
that instant any more), newest first by the journal's `created_at` then id, so an entry that shows
up later is always above every entry already shown."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection

from ledger import services
from ledger.types import Accounts, PostingLine
from tests.helpers import held_open, walk_list

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent commits: PostgreSQL"),
]


def _capture(merchant_id: str, amount: int, *, escrow: bool = False) -> None:
    # another of the merchant's accounts for the concurrent one (one account's postings wait in turn)
    merchant_account = Accounts.merchant_escrow if escrow else Accounts.merchant_pending
    services.journal_post(
        reference=f"capture:{uuid.uuid4().hex}",
        kind="capture",
        lines=(
            PostingLine.debit(Accounts.psp_receivable("alpha", "EUR"), amount),
            PostingLine.credit(merchant_account(merchant_id, "EUR"), amount),
        ),
        occurred_at=datetime.now(UTC),
    )


def _walk(client, *, stop_at: set[str] | None = None, limit: int = 1) -> list[dict]:
    return walk_list(client, "/v1/balance_transactions", stop_at=stop_at, limit=limit)


def test_an_entry_committed_late_is_never_listed_below_entries_already_listed(make_merchant_client):
    merchant, client = make_merchant_client()
    _capture(merchant.id, 100)
    with held_open(lambda: _capture(merchant.id, 500)):  # booked now (id, created_at), committed later
        _capture(merchant.id, 200, escrow=True)  # committed while the 500 is still open
        time.sleep(0.05)
        first_sync = _walk(client)

    # the merchant syncs again, down to the newest entry it already has
    known = {row["id"] for row in first_sync}
    second_sync = _walk(client, stop_at=known)
    synced = sorted(row["amount"] for row in first_sync + second_sync)
    assert synced == [100, 200, 500], (first_sync, second_sync)

    # and the whole list, once everything has committed, is the ledger's order (booking order)
    full = _walk(client, limit=100)
    assert [row["amount"] for row in full] == [200, 500, 100]
    assert len({row["id"] for row in full}) == 3
