"""When a returned refund happened, for reconciliation, and a refund returned before Payera saw it
succeed, end to end with the sandbox PSPs as real HTTP services (session 19's leftovers of the
refund reversals, docs/reconciliation.md "Returned refunds").

The bugs:
- a returned refund's time was its `updated_at`: any later save of the refund (an unrelated field)
  moved its reversal into another aging bucket and out of the missing-at-PSP window of the day it
  was returned;
- the refund half of a returned refund was looked for by the refund's creation time, not by when it
  succeeded (as any refund is): a refund asked one day and done by the PSP the next, then returned,
  was never missing at PSP in the report of the day it succeeded;
- a refund Payera never saw succeed (its webhooks lost) that the PSP had returned by the time the
  heal asked was recorded `failed` (the PSP's inquiry said `failed` only): its refund line and its
  reversal line both stayed `missing_in_payera`, netting to zero, with no journal behind either.
Now a refund keeps when it succeeded and when it was returned (`Refund.succeeded_at`,
`Refund.reversed_at`, each set once), reconciliation reads those, and the PSP's inquiry tells a
returned refund from a refused one (`OperationResult.returned`): payments records it succeeded,
then reversed, and both lines match."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.utils import timezone

from ledger.models import Journal
from payments.models import Refund
from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
from reconciliation.selectors import receivable_aging
from tests.scenarios.conftest import assert_ledger_sound
from tests.scenarios.test_reconciliation_disputes import _alpha_only, _astray, _back, _reconcile, _report, _ties_out
from tests.scenarios.test_reconciliation_refund_reversal import ZERO, _day, _return

pytestmark = [pytest.mark.scenario]


def _saved_later(refund: Refund, days: int) -> None:
    """Someone saves the refund `days` later (an unrelated field): `updated_at` moves."""
    later = timezone.now() + dt.timedelta(days=days)
    refund = Refund.objects.get(pk=refund.pk)
    refund.reason = "requested_by_customer"
    with mock.patch("django.utils.timezone.now", return_value=later):
        refund.save(update_fields=["reason", "updated_at"])
    assert Refund.objects.get(pk=refund.pk).updated_at == later


def test_a_later_save_of_a_returned_refund_moves_neither_its_aging_nor_its_missing_at_psp_day(env, tmp_path):
    _, returned = _day(env, "alpha")
    _return(env, "alpha", returned)
    _saved_later(returned, days=5)
    # five days on, every item of the day is five days old, the reversal (returned today) too: it
    # was new (0-1 days) by the save's time
    in_five_days = timezone.now() + dt.timedelta(days=5, hours=1)
    assert [(b["bucket"], b["amount"]) for b in receivable_aging(psp="alpha", now=in_five_days)] == [
        ("4-7 days", 3000 - 700 + 400)
    ]
    # today's report lacks the return: it is missing at PSP today (the day it was returned)
    without = _alpha_only(_report("alpha"), {"capture", "refund"})
    got = _reconcile(tmp_path, "alpha", without, "without")
    assert got == {"rows": 4, "matched": 4, "discrepancies": {**ZERO, "missing_at_psp": 1}}, got
    [d] = Discrepancy.objects.all()
    assert (d.kind, d.object_id, d.payera_amount) == ("missing_at_psp", returned.id, 400)
    _ties_out("alpha", 400)


def test_the_refund_half_of_a_returned_refund_is_looked_for_on_the_day_it_succeeded(env, tmp_path):
    """A refund asked yesterday that the PSP did today (its creation a day before its success),
    then returned: today's report lacking the refund's line is missing it at PSP (-4.00), as for any
    refund, and yesterday's report does not look for it."""
    _, returned = _day(env, "alpha")
    Refund.objects.filter(pk=returned.pk).update(created_at=returned.created_at - dt.timedelta(days=1))
    _return(env, "alpha", returned)
    yesterday = (timezone.now() - dt.timedelta(days=1)).date()
    assert _reconcile(tmp_path, "alpha", _report("alpha", yesterday), "yesterday")["discrepancies"] == ZERO
    day = _report("alpha")
    without = (
        "\n".join(line for line in day.splitlines() if not (line.startswith("refund,") and returned.id in line)) + "\n"
    )
    got = _reconcile(tmp_path, "alpha", without, "without")
    missing = {(d.kind, d.object_id, d.payera_amount) for d in Discrepancy.objects.all()}
    assert missing == {("missing_at_psp", returned.id, -400)}, (got, missing)
    _ties_out("alpha", -400)


def test_a_refund_never_seen_succeeding_and_returned_before_the_heal_asks_matches_both_lines(
    env, psp_webhooks, tmp_path
):
    """Beta did the refund and then the shopper's bank sent it back; both of its webhooks went astray,
    so Payera still holds the refund `pending`. The day's report lists the refund (-4.00) and its
    return (+4.00). The heal asked beta, heard `failed` and failed the refund: two lines
    `missing_in_payera` netting to 0, nothing posted. Now beta's answer says the refund was returned:
    it is recorded succeeded, then reversed (both journals once), and both lines match."""
    for sb in env.sandboxes.values():
        sb.reset()
    env.merchant.connectors = ["beta"]
    env.merchant.save(update_fields=["connectors"])
    p = env.wait(env.pay(amount=1000)["id"], lambda p: p["status"] == "succeeded")
    attempt_id = p["attempts"][-1]["id"]
    _astray(env, psp_webhooks, "beta")
    refund = env.post("/v1/refunds", {"payment": p["id"], "amount": 400}, expect=201)
    assert refund["status"] == "pending"
    done = psp_webhooks.wait_for(
        lambda h: h.json().get("eventCode") == "REFUND" and h.json()["paymentReference"] == attempt_id
    )
    assert done.json()["success"] is True  # the PSP refunded it; Payera never heard
    assert env.sandboxes["beta"].return_refund(done.json()["pspReference"]).status_code == 200
    psp_webhooks.wait_for(
        lambda h: (
            h.json().get("eventCode") in ("REFUND", "REFUND_FAILED")
            and h.json()["paymentReference"] == attempt_id
            and h.json()["success"] is not True
        )
    )
    _back(env, "beta")
    assert Refund.objects.get(pk=refund["id"]).status == "pending"

    text = _report("beta")
    for _ in range(2):  # the same file again changes nothing
        got = _reconcile(tmp_path, "beta", text, "day")
        assert got == {"rows": 3, "matched": 3, "discrepancies": ZERO}, got
    assert ReconciliationRun.objects.get().summary["healed"] >= 1
    r = Refund.objects.get(pk=refund["id"])
    assert r.status == "failed"
    assert r.succeeded_at is not None and r.reversed_at is not None
    for ref in (f"refund:{r.id}", f"refund_reversal:{r.id}"):
        assert Journal.objects.filter(reference=ref).count() == 1
    lines = {(line.kind, line.gross, line.outcome) for line in StatementLine.objects.filter(object_id=r.id)}
    assert lines == {("refund", -400, "matched"), ("refund_reversal", 400, "matched")}
    assert env.get(p["id"])["amount_refunded"] == 0
    _ties_out("beta", 0)
    assert receivable_aging(psp="beta") == []
    assert not Discrepancy.objects.exists()
    assert_ledger_sound()


def test_suspense_is_moved_to_a_returned_refunds_reversal_with_four_eyes(env, tmp_path, settings):
    """The PSP's reversal line names the returned refund by ids Payera does not know (missing in
    Payera, +4.00), while Payera's reversal of that refund is missing at PSP. Finance settles the line
    as reported (4.00 into suspense) and, once it is explained, moves the 4.00 to the receivable of
    the refund's return, as it can for a capture or a refund: refused before ("no succeeded capture
    or refund"). Over the approval threshold the move waits for a second finance user; audited."""
    from ledger import selectors as ledger_selectors
    from ledger.types import Accounts
    from payera.audit.models import AuditLogEntry
    from reconciliation.errors import DiscrepancyNeedsApprovalError
    from reconciliation.models import DiscrepancyApproval
    from reconciliation.services import (
        discrepancy_approval_approve,
        discrepancy_request,
        discrepancy_settle_as_reported,
        suspense_reallocate,
    )
    from tests.reconciliation.test_reconcile_resolutions import finance

    _, returned = _day(env, "alpha")
    _return(env, "alpha", returned)
    header, *body, trailer = _report("alpha").splitlines()
    rows = [line.split(",") for line in body]
    for cols in rows:
        if cols[0] == "refund_reversal":
            cols[5], cols[6] = "op_unknown", "re_unknown"  # ids Payera does not know
    text = "\n".join([header, *(",".join(cols) for cols in rows), trailer]) + "\n"
    got = _reconcile(tmp_path, "alpha", text, "day")
    assert got == {"rows": 5, "matched": 4, "discrepancies": {**ZERO, "missing_in_payera": 1, "missing_at_psp": 1}}
    line = Discrepancy.objects.get(kind="missing_in_payera")
    fin, fin2 = finance("fin1"), finance("fin2")
    discrepancy_settle_as_reported(discrepancy_id=line.pk, user=fin, reason="alpha paid the return back")
    suspense = Accounts.suspense("EUR")
    assert ledger_selectors.account_balance(key=suspense).posted == -400  # 4.00 received, unexplained
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 100
    with pytest.raises(DiscrepancyNeedsApprovalError):
        suspense_reallocate(discrepancy_id=line.pk, user=fin, reason="the return of " + returned.id,
                            to="receivable", object_id=returned.id)  # fmt: skip
    approval = discrepancy_request(action="reallocate_suspense", discrepancy_id=line.pk, user=fin,
                                   reason="the return of " + returned.id, to="receivable", object_id=returned.id,
                                   move=1)  # fmt: skip
    assert isinstance(approval, DiscrepancyApproval) and approval.amount == 400
    assert ledger_selectors.account_balance(key=suspense).posted == -400  # nothing moved yet
    done = discrepancy_approval_approve(approval_id=approval.pk, user=fin2, note="checked alpha's ticket")
    assert done.status == "done"
    line.refresh_from_db()
    [move] = line.suspense_moves
    assert (move["to"], move["object_id"], move["amount"], move["approved"]) == ("receivable", returned.id, 400, True)
    assert (line.object_id, line.receivable_cleared) == (returned.id, 400)
    assert ledger_selectors.account_balance(key=suspense).posted == 0
    assert any("suspense_moves" in e.changes_dict for e in AuditLogEntry.objects.get_for_object(line))
    # the return is off the receivable: the check and the aging say 0 (the refund's line settled)
    _ties_out("alpha", 0)
    assert receivable_aging(psp="alpha") == []
    assert_ledger_sound()
