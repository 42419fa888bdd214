"""Pure money rules of payouts (hypothesis), and the ledger selector settlement reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.selectors import account_entry_list
from ledger.types import Accounts
from reconciliation.postings import payout_amount, reserve_kept, settlement_lines
from tests.reconciliation.helpers import post_capture, post_refund

amounts = st.integers(min_value=-(10**12), max_value=10**12)
bps = st.integers(min_value=0, max_value=10_000)


@given(available=amounts, reserve_bps=bps, minimum=st.integers(min_value=1, max_value=10**9))
def test_a_payout_never_exceeds_available_and_keeps_at_least_the_reserve(available, reserve_bps, minimum):
    kept = reserve_kept(available=available, reserve_bps=reserve_bps)
    amount = payout_amount(available=available, reserve_bps=reserve_bps, minimum=minimum)
    assert 0 <= amount <= max(available, 0)
    assert amount == 0 or amount >= minimum
    if available > 0:
        assert 0 <= kept <= available
        assert kept * 10_000 >= available * reserve_bps  # rounded up: never less than the share
        assert amount in (0, available - kept)


def test_settlement_lines_balance_and_refuse_non_positive_amounts():
    lines = settlement_lines(merchant_id="mer_x", currency="EUR", amount=5)
    assert sum(line.amount for line in lines) == 0
    assert lines[0].account == Accounts.merchant_pending("mer_x", "EUR") and lines[0].amount == 5
    with pytest.raises(ValueError):
        settlement_lines(merchant_id="mer_x", currency="EUR", amount=-5)


@pytest.mark.django_db
def test_account_entry_list_filters_by_journal_time_and_kind():
    now = datetime(2026, 11, 23, tzinfo=UTC)
    key = Accounts.merchant_pending("mer_entrylist", "EUR")
    assert list(account_entry_list(key=key)) == []  # never created: no entries
    old = post_capture("mer_entrylist", gross=100, fee=3, at=now - timedelta(days=3))
    refund = post_refund("mer_entrylist", amount=10, at=now - timedelta(days=2))
    post_capture("mer_entrylist", gross=100, fee=3, at=now)
    rows = list(account_entry_list(key=key, occurred_before=now - timedelta(days=1)))
    assert [(r.reference, r.kind, r.amount) for r in rows] == [(old.reference, "capture", -97),
                                                               (refund.reference, "refund", 10)]
    assert [r.kind for r in account_entry_list(key=key, exclude_kinds=("refund",))] == ["capture", "capture"]
