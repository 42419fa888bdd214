"""Four eyes per item (docs/reconciliation.md, "Four eyes") for moves out of suspense to an item's
receivable: such a move takes money off the item's receivable as an adjustment does, so it is
measured with what the item's other resolutions moved without approval, and what it moves alone
counts for the item's later resolutions.

Before: a move to the receivable was measured only with its own discrepancy's earlier moves, and
recorded nothing for the item: one finance user took an adjustment and a move of one capture's
receivable under the threshold each, together above it. Real sandbox payments and their real alpha
report, on PostgreSQL."""

from __future__ import annotations

import pytest

from payments.models import Capture
from reconciliation.errors import DiscrepancyNeedsApprovalError
from reconciliation.models import Discrepancy
from reconciliation.services import discrepancy_resolve, discrepancy_settle_as_reported, suspense_reallocate
from tests.reconciliation.test_reconcile_resolutions import alpha_day, finance, journals, ties_out
from tests.reconciliation.test_reconcile_suspense import unknown

pytestmark = pytest.mark.django_db(transaction=True)


def _the_730_capture_twice() -> tuple[Discrepancy, Discrepancy, str]:
    """The 730 capture reported under ids Payera does not know: its line (missing in Payera) is
    settled as reported, 730 EUR into suspense (a second user approved it: nothing moved alone); the
    capture itself is missing at the PSP, 730 on the receivable."""
    run = alpha_day(unknown)
    line = run.discrepancies.get(kind="missing_in_payera")
    discrepancy_settle_as_reported(discrepancy_id=line.pk, user=finance("fin0"), reason="money arrived")
    Discrepancy.objects.filter(pk=line.pk).update(moved_alone=0, moved_alone_currency="")  # as an approval's
    capture = Capture.objects.get(amount=730)
    missing = run.discrepancies.get(kind="missing_at_psp", object_id=capture.pk)
    return Discrepancy.objects.get(pk=line.pk), missing, capture.pk


def test_an_adjustment_then_a_move_to_the_same_items_receivable_waits(a_day_of_payments, settings):
    """400 adjusted off the 730 capture, then the other 330 moved from suspense onto it, one user,
    under a threshold of 500 each: 730 together. The move waits for a second user."""
    line, missing, capture = _the_730_capture_twice()
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 500
    fin = finance("fin1")
    discrepancy_resolve(discrepancy_id=missing.pk, user=fin, reason="PSP fee agreed", adjustment=400, currency="EUR")
    with pytest.raises(DiscrepancyNeedsApprovalError, match="with the 400 .* moves 730"):
        suspense_reallocate(discrepancy_id=line.pk, user=fin, reason="it was cap 730", to="receivable",
                            object_id=capture, amount=330)  # fmt: skip
    assert journals("recon_suspense:") == 0
    ties_out()


def test_a_move_to_an_items_receivable_then_an_adjustment_of_it_waits(a_day_of_payments, settings):
    """The other order: 400 moved from suspense onto the 730 capture, then 330 adjusted off it. The
    adjustment counts the move made alone and waits."""
    line, missing, capture = _the_730_capture_twice()
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 500
    fin = finance("fin1")
    suspense_reallocate(discrepancy_id=line.pk, user=fin, reason="it was cap 730", to="receivable",
                        object_id=capture, amount=400)  # fmt: skip
    with pytest.raises(DiscrepancyNeedsApprovalError, match="with the 400 .* moves 730"):
        discrepancy_resolve(discrepancy_id=missing.pk, user=fin, reason="PSP fee agreed", adjustment=330,
                            currency="EUR")  # fmt: skip
    assert journals("recon_adjustment:") == 0
    ties_out()


def test_the_migration_fills_in_a_settle_into_suspense_and_a_move_to_an_item_made_alone(a_day_of_payments):
    """Resolutions made before the upgrade count as the services now record them: the unknown line
    settled into suspense alone (its 730) and 330 of it moved alone onto the 730 capture. Before, the
    backfill took only what resolutions cleared off the receivable of their own item: 0 for both, so
    after the upgrade the capture's next adjustment counted nothing of them."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    run = alpha_day(unknown)
    line = run.discrepancies.get(kind="missing_in_payera")
    fin = finance("fin1")
    discrepancy_settle_as_reported(discrepancy_id=line.pk, user=fin, reason="money arrived")
    suspense_reallocate(discrepancy_id=line.pk, user=fin, reason="it was cap 730", to="receivable",
                        object_id=Capture.objects.get(amount=730).pk, amount=330)  # fmt: skip
    recorded = Discrepancy.objects.values_list("moved_alone", "moved_alone_currency").get(pk=line.pk)
    assert recorded == (1_060, "EUR")
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([("reconciliation", "0018_discrepancy_missing_once_each_way")])
        executor = MigrationExecutor(connection)
        executor.migrate([("reconciliation", "0019_discrepancy_moved_alone")])
        assert Discrepancy.objects.values_list("moved_alone", "moved_alone_currency").get(pk=line.pk) == recorded
    finally:  # the later migrations back, for the tests after this one in the same database
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
