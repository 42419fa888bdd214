"""Four eyes on discrepancy money resolutions (docs/reconciliation.md, "Four eyes"): the doors
through which one finance user could still move more than RECONCILIATION_APPROVAL_THRESHOLD alone.
Real sandbox payments and their real alpha report, on PostgreSQL."""

from __future__ import annotations

import pytest

from ledger.types import Accounts
from payments.models import Capture
from reconciliation.errors import DiscrepancyNeedsApprovalError
from reconciliation.models import Discrepancy, DiscrepancyApproval
from reconciliation.services import (
    discrepancy_approval_approve,
    discrepancy_request,
    discrepancy_settle_as_reported,
    suspense_reallocate,
)
from tests.reconciliation.helpers import asset
from tests.reconciliation.test_reconcile_resolutions import alpha_day, finance, journals, ties_out
from tests.reconciliation.test_reconcile_suspense import in_suspense

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_suspense_move_split_into_moves_under_the_threshold_still_waits(a_day_of_payments, settings):
    """Before: the threshold was checked per move, and a move may take part of the suspense: one
    finance user moved 730 EUR out of suspense (to the PSP, or into a merchant's balance) alone, in
    two moves of 400 and 330 under a threshold of 500, with nobody else looking. Now what one
    discrepancy's moves made without approval add up to counts: the second move waits for a second
    user; a move made with approval does not count against the next."""
    d = in_suspense()  # 730 EUR in suspense
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 500
    fin = finance("fin1")
    suspense_reallocate(discrepancy_id=d.pk, user=fin, reason="owed back to alpha", to="psp_refund_due",
                        amount=400, move=1)  # fmt: skip
    with pytest.raises(DiscrepancyNeedsApprovalError, match="with the 400 .* moves 730"):
        suspense_reallocate(discrepancy_id=d.pk, user=fin, reason="owed back to alpha", to="psp_refund_due",
                            amount=330, move=2)  # fmt: skip
    assert asset(Accounts.suspense("EUR")) == -330 and journals("recon_suspense:") == 1
    # the admin's door asks a second user for it; approved, it moves
    approval = discrepancy_request(action="reallocate_suspense", discrepancy_id=d.pk, user=fin,
                                   reason="owed back to alpha", to="psp_refund_due", amount=330, move=2)  # fmt: skip
    assert isinstance(approval, DiscrepancyApproval) and approval.amount == 330  # what it moves
    done = discrepancy_approval_approve(approval_id=approval.pk, user=finance("fin2"), note="checked with alpha")
    assert done.status == "done" and asset(Accounts.suspense("EUR")) == 0 and journals("recon_suspense:") == 2
    ties_out()


def fee_line(i, cols):
    """The 730 capture's row names an attempt Payera does not have, and alpha charged 51.00 on it
    (gross 1.00, fee 51.00, net -50.00: taken from the payout)."""
    if i == 2:
        cols[3], cols[4], cols[5], cols[6] = "auth_UNKNOWN", "att_nothere", "op_UNKNOWN", ""
        cols[8], cols[9], cols[10] = "100", "5100", "-5000"


def test_settling_as_reported_a_line_whose_fee_is_above_the_threshold_waits(a_day_of_payments, settings):
    """Before: a line settled as reported was measured by its gross (or Payera's side) only, so a line
    missing in Payera with a small gross and a large fee (or net) was booked by one user alone: 51.00
    to PSP fee expense and 50.00 out of bank cash under a threshold of 10.00. Now the largest amount
    the journal books counts."""
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 1_000
    run = alpha_day(fee_line)
    d = run.discrepancies.get(kind="missing_in_payera")
    fin = finance("fin1")
    with pytest.raises(DiscrepancyNeedsApprovalError, match="5100 EUR"):
        discrepancy_settle_as_reported(discrepancy_id=d.pk, user=fin, reason="alpha's fee, ticket 7")
    assert journals("recon_settle:") == 0 and Discrepancy.objects.get(pk=d.pk).status == "open"
    approval = discrepancy_request(action="settle_as_reported", discrepancy_id=d.pk, user=fin,
                                   reason="alpha's fee, ticket 7")  # fmt: skip
    assert isinstance(approval, DiscrepancyApproval) and approval.amount == 5_100
    done = discrepancy_approval_approve(approval_id=approval.pk, user=finance("fin2"), note="checked with alpha")
    assert done.status == "done" and journals("recon_settle:") == 1
    assert asset(Accounts.suspense("EUR")) == -100


def test_an_approval_moves_no_more_than_was_approved(a_day_of_payments, settings):
    """Before: the approved action ran with no limit at all, and what it moves may grow between the
    question and the approval: a move of "all that is left" in suspense was asked at 530 EUR, a
    later report line then gave 200 EUR back to suspense, and the approver's click moved 730 EUR
    (the approval said 530). Now an approval runs its action up to the amount approved: more fails
    the approval (the reason recorded), nothing moves, and a new question may be asked."""
    d = in_suspense()  # 730 EUR in suspense; the real 730 capture is missing at the PSP
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 600
    fin = finance("fin1")
    capture = Capture.objects.get(amount=730)
    suspense_reallocate(discrepancy_id=d.pk, user=fin, reason="part of it was cap 730", to="receivable",
                        object_id=capture.id, amount=200, move=1)  # fmt: skip
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 500
    approval = discrepancy_request(action="reallocate_suspense", discrepancy_id=d.pk, user=fin,
                                   reason="the rest is owed back to alpha", to="psp_refund_due", move=2)  # fmt: skip
    assert isinstance(approval, DiscrepancyApproval) and approval.amount == 530
    alpha_day(keep=(2,))  # the real line: the 200 moved to the capture is back in suspense
    assert asset(Accounts.suspense("EUR")) == -730
    done = discrepancy_approval_approve(approval_id=approval.pk, user=finance("fin2"), note="checked with alpha")
    assert done.status == "failed" and "more than the 530 approved" in done.failure
    assert asset(Accounts.suspense("EUR")) == -730 and asset(Accounts.psp_payable("alpha", "EUR")) == 0
    assert journals("recon_suspense:") == 1
    ties_out()


def _recorded_before_the_split_rule(d: Discrepancy) -> None:
    """The discrepancy's moves as a move was recorded before the split-move rule: no `approved`."""
    moves = [{k: v for k, v in m.items() if k != "approved"} for m in Discrepancy.objects.get(pk=d.pk).suspense_moves]
    Discrepancy.objects.filter(pk=d.pk).update(suspense_moves=moves)


def test_an_approved_move_recorded_before_the_split_rule_does_not_count_as_made_alone(a_day_of_payments, settings):
    """A move of 600 made by an approval before moves recorded `approved` counted as made alone, so
    the next move of 130 (under the threshold of 500) was refused as moving 730 without approval.
    The done approval of that move (its number and amount) says it was approved: the 130 moves."""
    d = in_suspense()  # 730 EUR in suspense
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 500
    fin = finance("fin1")
    approval = discrepancy_request(action="reallocate_suspense", discrepancy_id=d.pk, user=fin,
                                   reason="owed back to alpha", to="psp_refund_due", amount=600, move=1)  # fmt: skip
    done = discrepancy_approval_approve(approval_id=approval.pk, user=finance("fin2"), note="checked with alpha")
    assert done.status == "done"
    _recorded_before_the_split_rule(d)
    suspense_reallocate(discrepancy_id=d.pk, user=fin, reason="owed back to alpha", to="psp_refund_due",
                        amount=130, move=2)  # fmt: skip
    assert asset(Accounts.suspense("EUR")) == 0 and journals("recon_suspense:") == 2
    ties_out()


def test_a_move_made_alone_before_the_split_rule_still_counts(a_day_of_payments, settings):
    """The same old record of a move made by one user alone (no approval of it) still counts: 400
    then 330 under a threshold of 500 waits for a second user."""
    d = in_suspense()
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 500
    fin = finance("fin1")
    suspense_reallocate(discrepancy_id=d.pk, user=fin, reason="owed back to alpha", to="psp_refund_due",
                        amount=400, move=1)  # fmt: skip
    _recorded_before_the_split_rule(d)
    with pytest.raises(DiscrepancyNeedsApprovalError, match="with the 400 .* moves 730"):
        suspense_reallocate(discrepancy_id=d.pk, user=fin, reason="owed back to alpha", to="psp_refund_due",
                            amount=330, move=2)  # fmt: skip
    assert asset(Accounts.suspense("EUR")) == -330 and journals("recon_suspense:") == 1
