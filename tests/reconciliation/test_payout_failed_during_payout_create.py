"""A payout failing while the next payout is being created (session 16, h16f).

What was wrong: `payout_mark_failed` locked only the payout, not the merchant's payout settings row
that `payout_create` (and settlement) hold. A failure committed between the new payout's read of
the available balance and its claim of the unpaid settlement runs gave the new payout the failed
payout's runs without their money: its statement listed transactions it did not pay (its
`carried_in` negative), and the payout that did pay that money back later listed none of them.
Real threads on PostgreSQL; the new payout is paused right after its balance read (the window the
race needs), nothing else is stubbed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection

from reconciliation.services import payout_mark_failed, payout_mark_in_transit
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import (
    assert_payout_ended_during_next_create_goes_with_the_payout_after_it,
    make_payout,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions: PostgreSQL"),
]

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_a_payout_failing_during_the_next_payouts_creation_is_listed_by_the_payout_that_pays_it(monkeypatch):
    merchant = MerchantFactory(settlement_delay_days=0)
    first = make_payout(merchant, gross=10_000, fee=300, now=NOW)  # 9,700
    payout_mark_in_transit(payout_id=first.id, now=NOW)
    assert_payout_ended_during_next_create_goes_with_the_payout_after_it(
        monkeypatch, merchant, first, NOW,
        lambda at: payout_mark_failed(payout_id=first.id, reason="returned", now=at),
    )
