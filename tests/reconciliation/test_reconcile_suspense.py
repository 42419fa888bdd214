"""Issue #8 limit 2: money a line settled as reported put into suspense is moved, once explained, to
where it belongs (`suspense_reallocate`, the admin action "Move money out of suspense"): finance
only, audited, merchant-scoped, one balanced journal per move with a business reference, never more
than is left in suspense for the line, in its currency and direction; a second submit moves nothing.
Real sandbox payments and their real alpha report, the admin through the test client."""

from __future__ import annotations

import pytest

from ledger.models import Journal
from ledger.types import Accounts
from payera.audit.models import AuditLogEntry
from payera.core.errors import InvalidRequestError
from payments.models import Capture
from reconciliation.errors import DiscrepancyMoneyError, DiscrepancyPermissionError
from reconciliation.models import Discrepancy
from reconciliation.selectors import receivable_aging
from reconciliation.services import discrepancy_settle_as_reported, suspense_reallocate
from tests.backoffice.staff import make_staff, otp_force_login
from tests.reconciliation.helpers import asset, pending
from tests.reconciliation.test_reconcile_resolutions import act, alpha_day, finance, ties_out

pytestmark = pytest.mark.django_db(transaction=True)


def unknown(i, cols):  # the 730 capture's row, naming an attempt and operations Payera does not have
    if i == 2:
        cols[3], cols[4], cols[5], cols[6] = "auth_UNKNOWN", "att_nothere", "op_UNKNOWN", ""


def in_suspense() -> Discrepancy:
    """The unknown line settled as reported: 730 EUR in suspense (the 730 capture missing at the PSP)."""
    run = alpha_day(unknown)
    d = run.discrepancies.get(kind="missing_in_payera")
    discrepancy_settle_as_reported(discrepancy_id=d.pk, user=finance("fin0"), reason="money arrived")
    assert asset(Accounts.suspense("EUR")) == -730
    return Discrepancy.objects.get(pk=d.pk)


def moves() -> int:
    return Journal.objects.filter(reference__startswith="recon_suspense:").count()


def test_suspense_moved_to_a_merchant_and_back_to_the_psp_once_each(client, a_day_of_payments):
    alpha_merchant, _ = a_day_of_payments
    d = in_suspense()
    owed_before = pending(alpha_merchant.id)
    # operations may not (no action, and the service refuses)
    otp_force_login(client, make_staff("ops", role="operations"))
    act(client, "reallocate_suspense", [d.pk], to="merchant", merchant_id=alpha_merchant.id, currency="EUR", move="1")
    assert moves() == 0
    with pytest.raises(DiscrepancyPermissionError):
        suspense_reallocate(discrepancy_id=d.pk, user=make_staff("ops2", role="operations"), reason="a refusal",
                            to="psp_refund_due")  # fmt: skip
    otp_force_login(client, finance())
    page = client.post("/admin/reconciliation/discrepancy/",
                       {"action": "reallocate_suspense", "_selected_action": [d.pk]}).content.decode()  # fmt: skip
    assert "730 EUR left in suspense" in page and 'name="move" value="1"' in page
    # 2.00 was the PSP's own test money: owed back to it
    act(client, "reallocate_suspense", [d.pk], to="psp_refund_due", amount="200", currency="EUR", move="1")
    act(client, "reallocate_suspense", [d.pk], to="psp_refund_due", amount="200", currency="EUR", move="1")  # again
    assert moves() == 1 and asset(Accounts.psp_payable("alpha", "EUR")) == -200
    assert asset(Accounts.suspense("EUR")) == -530
    # the rest is the merchant's (a payment Payera never recorded): all that is left, once
    act(client, "reallocate_suspense", [d.pk], to="merchant", merchant_id=alpha_merchant.id, currency="EUR", move="2")
    act(client, "reallocate_suspense", [d.pk], to="merchant", merchant_id=alpha_merchant.id, currency="EUR", move="2")
    assert moves() == 2 and asset(Accounts.suspense("EUR")) == 0
    assert pending(alpha_merchant.id) - owed_before == 530
    d.refresh_from_db()
    assert [(m["move"], m["to"], m["amount"], m["reference"], m["by"]) for m in d.suspense_moves] == [
        (1, "psp_refund_due", 200, f"recon_suspense:{d.pk}:1", "fin"),
        (2, "merchant", 530, f"recon_suspense:{d.pk}:2", "fin"),
    ]
    assert Journal.objects.get(reference=f"recon_suspense:{d.pk}:2").kind == "adjustment"
    # each submit is a staff action: the repeats say nothing moved again
    from payera.backoffice.models import StaffAction

    logged = StaffAction.objects.filter(action="reconciliation.discrepancy_reallocate_suspense", object_id=str(d.pk))
    assert [(s.outcome, "nothing moved again" in s.detail) for s in logged.order_by("pk")] == [
        ("done", False), ("done", True), ("done", False), ("done", True)]
    # nothing is left: a third move is refused
    with pytest.raises(DiscrepancyMoneyError, match="nothing in suspense"):
        suspense_reallocate(discrepancy_id=d.pk, user=finance("fin2"), reason="a refusal", to="psp_refund_due")
    # audited: the moves are in the discrepancy's audit trail
    assert AuditLogEntry.objects.filter(object_pk=str(d.pk), changes__icontains="suspense_moves").count() == 2
    ties_out()


def test_bad_moves_are_refused_with_clear_errors(a_day_of_payments):
    alpha_merchant, beta_merchant = a_day_of_payments
    d = in_suspense()
    fin = finance()
    capture = Capture.objects.get(amount=730)

    def move(**kwargs):
        return suspense_reallocate(discrepancy_id=d.pk, user=fin, reason="explained", **kwargs)

    with pytest.raises(DiscrepancyMoneyError, match="between 0 and 730 EUR"):
        move(to="psp_refund_due", amount=731)
    with pytest.raises(DiscrepancyMoneyError, match="between 0 and 730 EUR"):
        move(to="psp_refund_due", amount=-100)  # the other direction
    with pytest.raises(DiscrepancyMoneyError, match="in EUR, not USD"):
        move(to="psp_refund_due", currency="USD")
    with pytest.raises(InvalidRequestError, match="to must be one of"):
        move(to="bank_cash")
    with pytest.raises(InvalidRequestError, match="needs the capture or refund id"):
        move(to="receivable")
    with pytest.raises(DiscrepancyMoneyError, match="no succeeded capture or refund at alpha"):
        move(to="receivable", object_id="cap_nothere")
    settled = Capture.objects.get(amount=2_500)  # its report line settled it: nothing left to clear
    with pytest.raises(DiscrepancyMoneyError, match="has 0 EUR on the PSP receivable"):
        move(to="receivable", object_id=settled.id)
    with pytest.raises(DiscrepancyMoneyError, match="between 0 and 730 EUR"):
        move(to="receivable", object_id=capture.id, amount=731)
    with pytest.raises(InvalidRequestError, match="No merchant"):
        move(to="merchant", merchant_id="mer_nothere")
    with pytest.raises(DiscrepancyMoneyError, match="the next is 1"):
        move(to="psp_refund_due", move=3)
    # a discrepancy that put nothing into suspense (the 730 missing at the PSP)
    missing = Discrepancy.objects.get(kind="missing_at_psp")
    with pytest.raises(DiscrepancyMoneyError, match="nothing in suspense"):
        suspense_reallocate(discrepancy_id=missing.pk, user=fin, reason="a refusal", to="psp_refund_due")
    # finance limited to the beta merchant may not move money of a line no merchant owns
    from payera.staff.access import staff_grant_merchant

    limited = make_staff("fin_beta", role="finance")
    staff_grant_merchant(user=limited, merchant_id=beta_merchant.id)
    with pytest.raises(DiscrepancyPermissionError):
        suspense_reallocate(discrepancy_id=d.pk, user=limited, reason="a refusal", to="psp_refund_due")
    assert moves() == 0 and asset(Accounts.suspense("EUR")) == -730


def test_suspense_moved_to_the_receivable_of_the_capture_it_paid(a_day_of_payments):
    """The unknown line was the 730 capture after all: the money clears its receivable (check and
    aging true); the real line arriving later settles it again and gives the money back to suspense."""
    d = in_suspense()
    fin = finance()
    capture = Capture.objects.get(amount=730)
    assert [a["amount"] for a in receivable_aging(psp="alpha")] == [730]
    for _ in range(2):  # the form submitted twice: the second moves nothing and is no error
        suspense_reallocate(discrepancy_id=d.pk, user=fin, reason="it was cap 730", to="receivable",
                            object_id=capture.id, move=1)  # fmt: skip
    d.refresh_from_db()
    assert len(d.suspense_moves) == 1
    assert (d.object_id, d.receivable_cleared, d.cleared_currency, d.cleared_account) == (
        capture.id,
        730,
        "EUR",
        "suspense",
    )
    assert asset(Accounts.suspense("EUR")) == 0 and asset(Accounts.psp_receivable("alpha", "EUR")) == 0
    ties_out()
    assert receivable_aging(psp="alpha") == []
    # the PSP reports the real line later: the receivable is not credited again, suspense takes it
    later = alpha_day(keep=(2,))
    assert later.lines.get().outcome == "matched"
    assert asset(Accounts.psp_receivable("alpha", "EUR")) == 0
    assert asset(Accounts.suspense("EUR")) == -730  # paid twice: unexplained again
    assert Discrepancy.objects.get(pk=d.pk).receivable_recovered == 730
    ties_out()
    assert receivable_aging(psp="alpha") == []
    # it can be moved again: not to the capture (settled by its line now), but back to the PSP
    with pytest.raises(DiscrepancyMoneyError, match="has 0 EUR on the PSP receivable"):
        suspense_reallocate(discrepancy_id=d.pk, user=fin, reason="a refusal", to="receivable", object_id=capture.id)
    for merchant_id in ("", "mer_ignored"):  # twice; a merchant id means nothing for this target
        suspense_reallocate(discrepancy_id=d.pk, user=fin, reason="paid twice", to="psp_refund_due", move=2,
                            merchant_id=merchant_id)  # fmt: skip
    assert asset(Accounts.suspense("EUR")) == 0 and asset(Accounts.psp_payable("alpha", "EUR")) == -730
    ties_out()
