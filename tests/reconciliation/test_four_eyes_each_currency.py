"""Four eyes measures a line settled as reported in each currency it moves (docs/reconciliation.md,
"Four eyes"): a currency mismatch books the line in its currency and the item in the item's, and
each is held against its own currency's threshold and daily limit.

Before: the item's side (Payera's gross) was measured but labelled with the line's currency: alpha
settling our 2,500 EUR capture as 100 USD moved 2,500 EUR, checked against the dollar's threshold
and counted on the user's dollar day; the euros were counted nowhere. Real sandbox payments and
their real alpha report, on PostgreSQL."""

from __future__ import annotations

import pytest

from reconciliation.errors import DiscrepancyNeedsApprovalError
from reconciliation.models import Discrepancy, DiscrepancyApproval
from reconciliation.services import discrepancy_approval_approve, discrepancy_request, discrepancy_settle_as_reported
from tests.reconciliation.test_four_eyes_daily_limit import moved_today
from tests.reconciliation.test_reconcile_cleared_items import CURRENCY
from tests.reconciliation.test_reconcile_resolutions import FEE, GROSS, NET, alpha_day, finance, journals, ties_out

pytestmark = pytest.mark.django_db(transaction=True)

REASON = "alpha paid it in dollars"


def paid_in_dollars(gross: int, fee: int) -> Discrepancy:
    """Alpha settled our 2,500 EUR capture as `gross` USD: a currency mismatch."""

    def dollars(i, cols):
        cols[CURRENCY], cols[GROSS], cols[FEE], cols[NET] = "USD", str(gross), str(fee), str(gross - fee)

    d = alpha_day(dollars, keep=(1,)).discrepancies.get(kind="currency_mismatch")
    assert (d.payera_amount, d.line.expected_currency, d.currency) == (2_500, "EUR", "USD")
    return d


@pytest.fixture
def euros_paid_in_dollars(a_day_of_payments) -> Discrepancy:
    """Alpha settled our 2,500 EUR capture as 100 USD (fee 5, net 95)."""
    return paid_in_dollars(100, 5)


def test_the_items_euros_are_held_against_the_euros_threshold(euros_paid_in_dollars, settings):
    """2,500 EUR against the euro's threshold of 1,000 (not the dollar's 5,000): a second user."""
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 1_000
    settings.RECONCILIATION_APPROVAL_THRESHOLDS = {"USD": 5_000}
    d, fin = euros_paid_in_dollars, finance("fin1")
    with pytest.raises(DiscrepancyNeedsApprovalError, match=r"2500 EUR") as exc:
        discrepancy_settle_as_reported(discrepancy_id=d.pk, user=fin, reason=REASON)
    assert (exc.value.amount, exc.value.currency) == (2_500, "EUR")
    assert journals("recon_settle:") == 0
    approval = discrepancy_request(action="settle_as_reported", discrepancy_id=d.pk, user=fin, reason=REASON)
    assert isinstance(approval, DiscrepancyApproval) and (approval.amount, approval.currency) == (2_500, "EUR")
    assert discrepancy_approval_approve(approval_id=approval.pk, user=finance("fin2"), note="checked").status == "done"
    assert journals("recon_settle:") == 1 and (moved_today(fin, "EUR"), moved_today(fin, "USD")) == (0, 0)
    ties_out()


def test_each_currency_counts_on_its_own_day(euros_paid_in_dollars, settings):
    """Under both thresholds, made alone: 2,500 on the user's euro day and 100 on the dollar day
    (before: 2,500 on the dollar day, nothing on the euro day)."""
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 3_000
    settings.RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS = {"EUR": 10_000, "USD": 10_000}
    d, fin = euros_paid_in_dollars, finance("fin1")
    assert discrepancy_settle_as_reported(discrepancy_id=d.pk, user=fin, reason=REASON).status == "resolved"
    assert (moved_today(fin, "EUR"), moved_today(fin, "USD")) == (2_500, 100)
    d.refresh_from_db()
    assert (d.moved_alone, d.moved_alone_currency) == (2_500, "EUR")  # the item's, in the item's currency
    ties_out()


def test_the_euro_day_limit_holds_for_euros_paid_in_dollars(euros_paid_in_dollars, settings):
    """A daily limit of 1,200 EUR: the 2,500 EUR settled alone passes it (before: counted against
    the dollar's limit of 10,000, it ran alone)."""
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 3_000
    settings.RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS = {"EUR": 1_200, "USD": 10_000}
    d, fin = euros_paid_in_dollars, finance("fin1")
    with pytest.raises(DiscrepancyNeedsApprovalError, match=r"above your daily limit \(1200\)") as exc:
        discrepancy_settle_as_reported(discrepancy_id=d.pk, user=fin, reason=REASON)
    assert (exc.value.amount, exc.value.currency) == (2_500, "EUR")
    assert journals("recon_settle:") == 0 and (moved_today(fin, "EUR"), moved_today(fin, "USD")) == (0, 0)


def test_an_approval_runs_a_resolution_above_both_currencies_thresholds(a_day_of_payments, settings):
    """Our 2,500 EUR capture settled by alpha as 5,000 USD, each above its threshold of 1,000: the
    second user's approval (asked at the first currency's amount) runs the resolution as a whole."""
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 1_000
    d, fin = paid_in_dollars(5_000, 50), finance("fin1")
    approval = discrepancy_request(action="settle_as_reported", discrepancy_id=d.pk, user=fin, reason=REASON)
    assert isinstance(approval, DiscrepancyApproval) and (approval.amount, approval.currency) == (2_500, "EUR")
    done = discrepancy_approval_approve(approval_id=approval.pk, user=finance("fin2"), note="checked")
    assert done.status == "done", done.failure
    assert journals("recon_settle:") == 1 and (moved_today(fin, "EUR"), moved_today(fin, "USD")) == (0, 0)
    ties_out()
