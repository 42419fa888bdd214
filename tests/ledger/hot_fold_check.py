"""A hot account whose shards each fit in 64 bits but whose sum does not (review r19e, session 19):
its balance (now and as of an instant) and the ledger's totals are read exactly, never a raw error.

What was wrong: on SQLite, `account_balance`, `account_balance_at` and `balance_get` of a hot account and
`ledger_totals` summed with SQLite's sum(), which raises OperationalError "integer overflow" past the
64-bit range (PostgreSQL's sum of bigints is an exact numeric). A shard refuses a posting past the range
(`overflow`), but shards are 16 rows: a hot account's balance may pass it while each shard fits.

Shared by tests/ledger/test_hot_fold_overflow.py (PostgreSQL) and tests/ledger/sqlite_hot_fold_check.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.db import connection

from ledger import selectors, services
from ledger.errors import BalanceOverflowError
from ledger.models import Account
from ledger.types import Accounts, transfer_lines

LINE = 2**62 - 1


def check_a_hot_balance_past_64_bits_is_read_exactly() -> None:
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    currency = "JPY"
    hot = Accounts.fee_revenue(currency)
    posted = 0
    # until the hot account's shards together hold more than 2**63 (each shard at most 2 lines)
    for n in range(40):
        merchant = Accounts.merchant_available(f"mer_hf{n}{tag}", currency)
        try:
            services.journal_post(
                reference=f"hf{n}:{tag}", lines=transfer_lines(debit=merchant, credit=hot, amount=LINE), occurred_at=now
            )
        except BalanceOverflowError:
            # the shard taken is full (PostgreSQL takes the same free shard from one connection)
            continue
        posted += LINE
        if posted > 2**64:
            break
    shards = [
        b
        for b in Account.objects.filter(
            parent__code=hot.code, parent__currency=currency, parent__parent=None
        ).values_list("balance", flat=True)
    ]
    if connection.vendor == "sqlite":  # a shard at random per posting: the sum passes 2**63
        assert posted > 2**63, posted
    assert sum(shards) == -posted and all(-(2**63) <= b for b in shards), shards
    assert selectors.account_balance(key=hot).posted == -posted
    assert selectors.account_balance_at(key=hot, at=datetime.now(UTC)) == -posted
    assert selectors.ledger_totals()[currency] == 0
