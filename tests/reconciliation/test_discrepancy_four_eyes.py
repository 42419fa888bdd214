"""Four eyes on finance's money resolutions of discrepancies (docs/reconciliation.md, "Four eyes").

Before: one finance user alone could write off, adjust, settle as reported or move out of suspense
any amount: a single person could move a large sum to a loss account, or out of suspense into a
merchant's balance, with nobody else looking. Now a resolution moving more than
`RECONCILIATION_APPROVAL_THRESHOLD` waits, with nothing moved, until a different user holding the
same permissions approves it; the database refuses an approval by the user who asked.
Real sandbox payments and their real alpha report, the admin through the test client."""

from __future__ import annotations

import threading

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.db import IntegrityError, connection, transaction

from ledger.types import Accounts
from reconciliation.errors import (
    DiscrepancyApprovalPendingError,
    DiscrepancyApprovalStateError,
    DiscrepancyFourEyesError,
    DiscrepancyNeedsApprovalError,
)
from reconciliation.models import Discrepancy, DiscrepancyApproval
from reconciliation.services import (
    discrepancy_approval_approve,
    discrepancy_approval_reject,
    discrepancy_request,
    discrepancy_write_off,
    suspense_reallocate,
)
from tests.backoffice.staff import otp_force_login
from tests.reconciliation.helpers import asset, pending
from tests.reconciliation.test_reconcile_resolutions import act, alpha_day, finance, journals, ties_out
from tests.reconciliation.test_reconcile_suspense import in_suspense

pytestmark = pytest.mark.django_db(transaction=True)

APPROVALS = "/admin/reconciliation/discrepancyapproval/"


@pytest.fixture
def threshold(settings):
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 1_000
    return 1_000


def missing_2500() -> Discrepancy:
    """The 2,500 capture missing at the PSP (the day's report without its row)."""
    return alpha_day(keep=(0, 2, 3)).discrepancies.get(kind="missing_at_psp")


def test_a_write_off_above_the_threshold_waits_for_a_second_finance_user(client, a_day_of_payments, threshold):
    d = missing_2500()
    asker, approver = finance("fin1"), finance("fin2")
    otp_force_login(client, asker)
    page = act(client, "write_off", [d.pk])
    assert "waiting for a second user" in page
    d.refresh_from_db()
    assert d.status == "open" and journals("recon_write_off:") == 0
    [approval] = DiscrepancyApproval.objects.all()
    assert (approval.action, approval.amount, approval.currency, approval.status, approval.requested_by) == (
        "write_off",
        2_500,
        "EUR",
        "pending",
        asker,
    )
    # the same page sent again asks once
    act(client, "write_off", [d.pk])
    assert DiscrepancyApproval.objects.count() == 1
    # the asker sees no Approve button and may not approve through the service or the page
    url = f"{APPROVALS}{quote(approval.pk)}/change/"
    assert 'id="bo-approve"' not in client.get(url).content.decode()
    with pytest.raises(DiscrepancyFourEyesError):
        discrepancy_approval_approve(approval_id=approval.pk, user=asker, note="my own approval")
    client.post(f"{APPROVALS}{quote(approval.pk)}/approve/", {"reason": "approving my own"})
    assert DiscrepancyApproval.objects.get(pk=approval.pk).status == "pending" and journals("recon_write_off:") == 0
    # a second finance user approves it on the approval's page: written off now, once
    otp_force_login(client, approver)
    assert 'id="bo-approve"' in client.get(url).content.decode()
    client.post(f"{APPROVALS}{quote(approval.pk)}/approve/", {"reason": "checked the PSP ticket"})
    approval.refresh_from_db()
    d.refresh_from_db()
    assert (approval.status, approval.decided_by) == ("done", approver)
    assert d.status == "written_off" and d.resolved_by == "fin1" and journals("recon_write_off:") == 1
    assert asset(Accounts.reconciliation_differences("EUR")) == 2_500
    ties_out()
    with pytest.raises(DiscrepancyApprovalStateError):
        discrepancy_approval_approve(approval_id=approval.pk, user=finance("fin3"), note="approve again")
    assert journals("recon_write_off:") == 1


def test_the_services_refuse_above_the_threshold_and_run_at_or_below_it(a_day_of_payments, threshold):
    d = missing_2500()
    fin = finance("fin1")
    with pytest.raises(DiscrepancyNeedsApprovalError, match="2500 EUR"):
        discrepancy_write_off(discrepancy_id=d.pk, user=fin, reason="the PSP will never pay")
    assert journals("recon_write_off:") == 0 and Discrepancy.objects.get(pk=d.pk).status == "open"
    # an adjustment of 1,000 (the threshold) runs at once
    after = discrepancy_request(action="resolve", discrepancy_id=d.pk, user=fin,
                                reason="PSP fee agreed", adjustment=1_000, currency="EUR")  # fmt: skip
    assert isinstance(after, Discrepancy) and after.status == "resolved" and journals("recon_adjustment:") == 1
    assert DiscrepancyApproval.objects.count() == 0


def test_the_database_refuses_an_approval_by_the_asker_and_a_second_question(a_day_of_payments, threshold):
    d = missing_2500()
    asker, other = finance("fin1"), finance("fin2")
    approval = discrepancy_request(action="write_off", discrepancy_id=d.pk, user=asker, reason="never paid")
    with pytest.raises(DiscrepancyApprovalPendingError):
        discrepancy_request(action="resolve", discrepancy_id=d.pk, user=other, reason="fees agreed",
                            adjustment=2_000, currency="EUR")  # fmt: skip
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE reconciliation_discrepancyapproval SET status = 'done', decided_by_id = requested_by_id"
                       " WHERE id = %s", [approval.pk])  # fmt: skip
    with pytest.raises(IntegrityError), transaction.atomic():
        DiscrepancyApproval.objects.create(discrepancy=d, action="write_off", amount=2_500, currency="EUR",
                                           reason="a second one", requested_by=finance("fin3"))  # fmt: skip
    # rejected: nothing moved, and another resolution may be asked
    discrepancy_approval_reject(approval_id=approval.pk, user=asker, note="asked by mistake")
    assert DiscrepancyApproval.objects.get(pk=approval.pk).status == "rejected" and journals("recon_") == 0
    again = discrepancy_request(action="resolve", discrepancy_id=d.pk, user=other, reason="fees agreed",
                                adjustment=2_000, currency="EUR")  # fmt: skip
    assert isinstance(again, DiscrepancyApproval) and again.status == "pending"


def test_an_approval_whose_asker_lost_the_permission_fails_and_moves_nothing(a_day_of_payments, threshold):
    """The action runs as the user who asked: one who left finance meanwhile no longer may."""
    d = missing_2500()
    asker = finance("fin1")
    approval = discrepancy_request(action="write_off", discrepancy_id=d.pk, user=asker, reason="never paid")
    asker.groups.clear()
    asker.user_permissions.remove(*Permission.objects.filter(content_type__app_label="reconciliation"))
    done = discrepancy_approval_approve(approval_id=approval.pk, user=finance("fin2"), note="checked the ticket")
    assert done.status == "failed" and "permission" in done.failure
    assert journals("recon_write_off:") == 0 and Discrepancy.objects.get(pk=d.pk).status == "open"


def test_two_approvers_at_once_write_off_once(a_day_of_payments, threshold):
    d = missing_2500()
    approval = discrepancy_request(action="write_off", discrepancy_id=d.pk, user=finance("fin1"), reason="never paid")
    approvers = [finance("fin2"), finance("fin3")]
    start, answers = threading.Barrier(2), []

    def approve(user):
        try:
            start.wait()
            answers.append(discrepancy_approval_approve(approval_id=approval.pk, user=user, note="checked it").status)
        except DiscrepancyApprovalStateError as exc:
            answers.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(u,)) for u in approvers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == ["discrepancy_approval_state_invalid", "done"]
    assert journals("recon_write_off:") == 1
    ties_out()


def test_money_moved_out_of_suspense_to_a_merchant_waits_for_a_second_user(a_day_of_payments, threshold, settings):
    alpha_merchant, _ = a_day_of_payments
    d = in_suspense()  # 730 EUR in suspense (settled as reported, under the threshold)
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 500
    owed_before = pending(alpha_merchant.id)
    fin = finance("fin1")
    with pytest.raises(DiscrepancyNeedsApprovalError):
        suspense_reallocate(discrepancy_id=d.pk, user=fin, reason="the merchant's sale", to="merchant",
                            merchant_id=alpha_merchant.id)  # fmt: skip
    approval = discrepancy_request(action="reallocate_suspense", discrepancy_id=d.pk, user=fin,
                                   reason="the merchant's sale", to="merchant", merchant_id=alpha_merchant.id,
                                   move=1)  # fmt: skip
    assert isinstance(approval, DiscrepancyApproval) and approval.amount == 730
    assert pending(alpha_merchant.id) == owed_before and asset(Accounts.suspense("EUR")) == -730
    assert discrepancy_approval_approve(approval_id=approval.pk, user=finance("fin2"), note="sale found").status == (
        "done"
    )
    assert pending(alpha_merchant.id) - owed_before == 730 and asset(Accounts.suspense("EUR")) == 0
