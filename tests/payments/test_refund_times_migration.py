"""Migration payments 0023_refund_succeeded_reversed_at backfills a refund's own times from the
ledger (its journals are never updated), not from `updated_at`, which any later save moved: a
succeeded refund's `succeeded_at` from `refund:<re>`, a returned refund's `reversed_at` from
`refund_reversal:<re>` and its `succeeded_at` from `refund:<re>`; a refund that never succeeded
gets neither. Real alpha sandbox (HTTP) for the payment and its refunds, on PostgreSQL.

Since session 20 the backfill is its own migration, payments 0025_refund_times_backfill (0023 adds
the columns only): non-atomic, batch by batch, each batch its own transaction
(payera.core.backfill, docs/runbooks/backfill.md). The tests below run it in batches of one row:
same result, an interrupted run resumes, a rerun changes nothing."""

from __future__ import annotations

import datetime as dt
import importlib
import io
from contextlib import contextmanager

import pytest
from django.core.management import call_command
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
BACKFILLED = [("payments", "0025_refund_times_backfill")]


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
        executor.migrate(BACKFILLED)
        got = {r.id: (r.succeeded_at, r.reversed_at) for r in Refund.objects.filter(pk__in=expected)}
        assert got == expected
    finally:  # the later migrations back, for the tests after this one in the same database
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def _backfill_module():
    return importlib.import_module("payments.migrations.0025_refund_times_backfill")


def _migrate(targets) -> None:
    MigrationExecutor(connection).migrate(targets)


def _restore_leaves() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@contextmanager
def _refund_updates(*, fail_at: int | None = None):
    """The UPDATEs of payments_refund run meanwhile, as their row counts; the `fail_at`-th (1-based)
    raises instead of running (the process killed mid-backfill)."""
    counts: list[int] = []

    def wrapper(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("UPDATE") and "payments_refund" in sql.split("SET")[0]:
            if fail_at is not None and len(counts) + 1 == fail_at:
                raise RuntimeError("interrupted")
            result = execute(sql, params, many, context)
            counts.append(context["cursor"].rowcount)
            return result
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield counts


def _history():
    """Three refunds kept, one returned, and one `succeeded` row with no journal (before the ledger
    posted refunds, say: its time falls back to `updated_at`), all saved since; the times the
    backfill must give each."""
    merchant = MerchantFactory(connectors=["alpha"])
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
    kept = [refund_create(merchant=merchant, payment_id=payment.id, amount=a) for a in (100, 150, 200)]
    returned = refund_create(merchant=merchant, payment_id=payment.id, amount=250)
    refund_record_outcome(refund_id=returned.id, outcome=Outcome.DECLINED, actor="test")
    assert Refund.objects.get(pk=returned.id).status == OperationStatus.FAILED
    bare = Refund(merchant=merchant, payment=payment, attempt=kept[0].attempt, amount=10, currency="EUR",
                  status=OperationStatus.SUCCEEDED)
    Refund.objects.bulk_create([bare])
    later = timezone.now() + dt.timedelta(days=3)
    Refund.objects.filter(pk__in=[r.id for r in (*kept, returned, bare)]).update(updated_at=later)
    expected = {r.id: (_at(f"refund:{r.id}"), None) for r in kept}
    expected[returned.id] = (_at(f"refund:{returned.id}"), _at(f"refund_reversal:{returned.id}"))
    expected[bare.id] = (later, None)
    return expected


def _times(ids) -> dict:
    return {r.id: (r.succeeded_at, r.reversed_at) for r in Refund.objects.filter(pk__in=ids)}


@contextmanager
def _before_the_backfill(monkeypatch, batch_size: int | None = None):
    """`_history()`'s refunds as they were before 0023 (no times), batches of `batch_size`; the leaf
    nodes restored afterwards."""
    expected = _history()
    if batch_size is not None:
        monkeypatch.setattr(_backfill_module(), "BATCH_SIZE", batch_size)
    try:
        _migrate(BEFORE)
        yield expected
    finally:
        _restore_leaves()


@pytest.mark.django_db(transaction=True)
def test_the_backfill_runs_in_batches_each_committed_with_the_one_statements_result(psp_settings, monkeypatch):
    with _before_the_backfill(monkeypatch, batch_size=1) as expected:
        with _refund_updates() as counts:
            _migrate(BACKFILLED)
        # four `succeeded` rows, then the returned one: one row a batch, one UPDATE a batch
        assert counts == [1, 1, 1, 1, 1]
        assert _times(expected) == expected


@pytest.mark.django_db(transaction=True)
def test_an_interrupted_backfill_kept_its_batches_and_resumes(psp_settings, monkeypatch):
    with _before_the_backfill(monkeypatch, batch_size=2) as expected:
        with _refund_updates(fail_at=2) as counts, pytest.raises(RuntimeError, match="interrupted"):
            _migrate(BACKFILLED)
        assert counts == [2]  # the first batch committed, the second never ran
        filled = {k for k, (succeeded_at, _) in _times(expected).items() if succeeded_at is not None}
        assert len(filled) == 2
        with _refund_updates() as counts:  # run again: the rest only
            _migrate(BACKFILLED)
        assert counts == [2, 1]
        assert _times(expected) == expected


@pytest.mark.django_db(transaction=True)
def test_a_rerun_of_the_backfill_changes_nothing(psp_settings, monkeypatch):
    with _before_the_backfill(monkeypatch) as expected:
        _migrate(BACKFILLED)
        assert _times(expected) == expected
        # saved again since: a backfill that refilled filled rows would move the journal-less one
        Refund.objects.filter(pk__in=expected).update(updated_at=timezone.now() + dt.timedelta(days=9))
        _migrate([("payments", "0024_subscription_cancel_at_period_end_later_dunning")])
        with _refund_updates() as counts:
            _migrate(BACKFILLED)
        assert counts == []  # no row was pending: no batch, no UPDATE
        assert _times(expected) == expected


@pytest.mark.django_db(transaction=True)
def test_the_backfill_command_fills_what_old_code_left_pending_after_the_migration(psp_settings):
    """The old code, still serving while the migration ran, recorded refunds without their times:
    `manage.py backfill payments 0025_refund_times_backfill` fills those, and only those."""
    expected = _history()
    Refund.objects.filter(pk__in=expected).update(succeeded_at=None, reversed_at=None)  # as 0023 left them
    call_command("backfill", "payments", "0025_refund_times_backfill", stdout=io.StringIO())
    assert _times(expected) == expected
    left = [k for k, (_, reversed_at) in expected.items() if reversed_at is not None] + list(expected)[:1]
    Refund.objects.filter(pk__in=left).update(succeeded_at=None, reversed_at=None)
    out = io.StringIO()
    with _refund_updates() as counts:
        call_command("backfill", "payments", "0025_refund_times_backfill", "--batch-size", "1", stdout=out)
    assert counts == [1, 1]  # the succeeded one, then the returned one: nothing else
    assert _times(expected) == expected
    assert "payments_refund: 1 rows in 1 batches" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_backfill_fills_a_returned_refunds_success_the_old_code_left_out(psp_settings):
    """A refund that succeeded in the old code (no `succeeded_at`) and was returned once the new code
    served (`reversed_at` set by `mark_reversed`, which leaves `succeeded_at` as it is): the rerun
    fills its `succeeded_at` from its journal, as reconciliation's period of successes reads it."""
    expected = _history()
    returned = next(k for k, (_, reversed_at) in expected.items() if reversed_at is not None)
    reversed_at = Refund.objects.get(pk=returned).reversed_at  # mark_reversed's, kept
    Refund.objects.filter(pk=returned).update(succeeded_at=None)
    call_command("backfill", "payments", "0025_refund_times_backfill", stdout=io.StringIO())
    assert _times([returned]) == {returned: (expected[returned][0], reversed_at)}
