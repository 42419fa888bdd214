"""payera.core.backfill refuses to run inside a caller's transaction, which would hold every batch
until it commits (docs/runbooks/backfill.md); its batches are covered by
tests/payments/test_refund_times_migration.py."""

from __future__ import annotations

import pytest
from django.db import transaction

from payera.core.backfill import Backfill, run_backfill
from tests.merchants.factories import MerchantFactory

NOTHING = Backfill(table="merchants_merchant", set="name = name", pending="1 = 0")


@pytest.mark.django_db(transaction=True)
def test_a_backfill_inside_a_transaction_is_refused():
    MerchantFactory()  # a row pending: a batch to run
    with transaction.atomic(), pytest.raises(RuntimeError, match="durable"):
        run_backfill(Backfill(table="merchants_merchant", set="name = name", pending="1 = 1"), batch_size=10)


@pytest.mark.django_db(transaction=True)
def test_a_backfill_with_nothing_pending_runs_no_batch():
    assert run_backfill(NOTHING, batch_size=10).batches == 0
    with pytest.raises(ValueError):
        run_backfill(NOTHING, batch_size=0)
