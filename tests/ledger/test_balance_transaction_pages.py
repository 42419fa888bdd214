"""`balance_transaction_page` walks an owner's entries in exactly the order of its definition.

The page used to be one query that sorted every entry of the owner by (journal `created_at`, id)
to return 11 (about a second per page for a merchant with 200,000 entries; bench/ledger
`--balance-pages` measures it). On PostgreSQL it now searches each of the owner's accounts by
version (`_BALANCE_PAGE_PG`), which is right only because on one account the order by version is
the order by (`created_at`, id). These tests hold the new walk to the definition: the owner's posted
entries from `balance_transaction_list`, newest first, cut into pages, whatever the mix of accounts,
currencies, batches (one `created_at` for many journals), two-phase journals (pending entries take
versions but are not listed) and page sizes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import services
from ledger.errors import BalanceTransactionCursorError
from ledger.selectors import balance_transaction_list, balance_transaction_page
from ledger.types import Accounts, JournalRequest, PostingLine

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
MERCHANT_ACCOUNTS = (
    Accounts.merchant_pending,
    Accounts.merchant_available,
    Accounts.merchant_escrow,
    Accounts.merchant_reserve,
)

# one operation: (kind, merchant account index, other account index, currency index, amount, batch size)
operations = st.lists(
    st.tuples(
        st.sampled_from(["single", "batch", "pending_post", "pending_void", "other_owner"]),
        st.integers(0, 3),
        st.integers(0, 3),
        st.integers(0, 1),
        st.integers(1, 5_000),
        st.integers(2, 6),
    ),
    min_size=1,
    max_size=25,
)


def _lines(owner: str, a: int, b: int, currency: str, amount: int) -> tuple[PostingLine, ...]:
    receivable, first = Accounts.psp_receivable("alpha", currency), MERCHANT_ACCOUNTS[a](owner, currency)
    if a != b:  # two of the owner's accounts in one journal
        return (
            PostingLine.debit(receivable, amount),
            PostingLine.credit(first, amount),
            PostingLine.debit(MERCHANT_ACCOUNTS[b](owner, currency), amount),
            PostingLine.credit(Accounts.suspense(currency), amount),
        )
    if amount == 1:
        return (PostingLine.debit(receivable, amount), PostingLine.credit(first, amount))
    # the same account twice in one journal: two entries, two versions, one created_at
    return (PostingLine.debit(receivable, amount), PostingLine.credit(first, amount - 1), PostingLine.credit(first, 1))


def _apply(owner: str, ops) -> None:
    for kind, a, b, c, amount, size in ops:
        currency = ("EUR", "USD")[c]
        ref = f"t:{uuid.uuid4().hex}"
        if kind == "single":
            services.journal_post(reference=ref, lines=_lines(owner, a, b, currency, amount), occurred_at=NOW)
        elif kind == "other_owner":
            services.journal_post(reference=ref, lines=_lines(f"{owner}_x", a, b, currency, amount), occurred_at=NOW)
        elif kind == "batch":
            services.journal_post_many(
                [
                    JournalRequest(
                        reference=f"{ref}:{i}", lines=_lines(owner, (a + i) % 4, b, currency, amount), occurred_at=NOW
                    )
                    for i in range(size)
                ]
            )
        else:
            held = services.pending_create(reference=ref, lines=_lines(owner, a, b, currency, amount), occurred_at=NOW)
            services.journal_post(
                reference=f"{ref}:between", lines=_lines(owner, b, a, currency, amount), occurred_at=NOW
            )
            if kind == "pending_post":
                services.pending_post(pending_id=held.journal_id, reference=f"{ref}:post", occurred_at=NOW)
            else:
                services.pending_void(pending_id=held.journal_id, reference=f"{ref}:void", occurred_at=NOW)


def _walk(owner: str, limit: int, currency: str | None = None) -> list[int]:
    ids: list[int] = []
    cursor = None
    while True:
        rows, has_more = balance_transaction_page(owner=owner, limit=limit, starting_after=cursor, currency=currency)
        assert len(rows) <= limit and (not has_more or len(rows) == limit)
        ids.extend(row.id for row in rows)
        if not has_more:
            return ids
        cursor = rows[-1].id


@pytest.mark.django_db
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(ops=operations, limit=st.integers(1, 7))
def test_pages_walk_the_owners_entries_in_the_lists_order(ops, limit):
    owner = f"mer_{uuid.uuid4().hex[:12]}"
    _apply(owner, ops)
    expected = list(balance_transaction_list(owner=owner).values_list("id", flat=True))
    assert _walk(owner, limit) == expected
    for currency in ("EUR", "USD"):
        assert _walk(owner, limit, currency) == list(
            balance_transaction_list(owner=owner, currency=currency).values_list("id", flat=True)
        )


@pytest.mark.django_db
def test_a_cursor_of_another_owner_or_currency_is_refused():
    owner = f"mer_{uuid.uuid4().hex[:12]}"
    _apply(owner, [("single", 0, 1, 0, 100, 2), ("other_owner", 0, 1, 0, 100, 2)])
    theirs = balance_transaction_list(owner=f"{owner}_x").values_list("id", flat=True).first()
    with pytest.raises(BalanceTransactionCursorError):
        balance_transaction_page(owner=owner, limit=5, starting_after=theirs)
    mine = balance_transaction_list(owner=owner).values_list("id", flat=True).first()
    with pytest.raises(BalanceTransactionCursorError):
        balance_transaction_page(owner=owner, limit=5, starting_after=mine, currency="USD")
    assert balance_transaction_page(owner="mer_nobody", limit=5) == ([], False)
