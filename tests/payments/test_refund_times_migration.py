"""Migration payments 0023_refund_succeeded_reversed_at backfills a refund's own times from the
ledger (its journals are never updated), not from `updated_at`, which any later save moved: a
succeeded refund's `succeeded_at` from `refund:<re>`, a returned refund's `reversed_at` from
`refund_reversal:<re>` and its `succeeded_at` from `refund:<re>`; a refund that never succeeded
gets neither. Real alpha sandbox (HTTP) for the payment and its refunds, on PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from ledger.models import Journal
from payments.models import OperationStatus, Refund
from payments.services import payment_create, refund_create
from payments.services.refunds import refund_record_outcome
from psp_adapters.port import Outcome
from tests.merchants.factories import MerchantFactory

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
BEFORE = [("payments", "0022_attempt_void_number")]


def _at(reference: str) -> dt.datetime:
    return Journal.objects.get(reference=reference).occurred_at


@pytest.mark.django_db(transaction=True)
def test_the_backfill_takes_a_refunds_times_from_its_journals(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"])
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
    assert payment.status == "succeeded"
    kept = refund_create(merchant=merchant, payment_id=payment.id, amount=300)
    returned = refund_create(merchant=merchant, payment_id=payment.id, amount=400)
    assert (kept.status, returned.status) == (OperationStatus.SUCCEEDED, OperationStatus.SUCCEEDED)
    # the PSP fails the 400 after it succeeded (the shopper's bank sent it back): reversed
    refund_record_outcome(refund_id=returned.id, outcome=Outcome.DECLINED, actor="test")
    assert Refund.objects.get(pk=returned.id).status == OperationStatus.FAILED
    expected = {
        kept.id: (_at(f"refund:{kept.id}"), None),
        returned.id: (_at(f"refund:{returned.id}"), _at(f"refund_reversal:{returned.id}")),
    }
    # both saved much later (an unrelated change): `updated_at` no longer tells when they happened
    Refund.objects.filter(pk__in=expected).update(updated_at=timezone.now() + dt.timedelta(days=3))
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        executor = MigrationExecutor(connection)
        executor.migrate([("payments", "0023_refund_succeeded_reversed_at")])
        got = {r.id: (r.succeeded_at, r.reversed_at) for r in Refund.objects.filter(pk__in=expected)}
        assert got == expected
    finally:  # the later migrations back, for the tests after this one in the same database
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
