"""A refund the shopper's bank sent back (returned after it succeeded) through reconciliation, end to
end with the sandbox PSPs as real HTTP services (`POST /_sandbox/refunds/<op>/return`).

The bug: reconciliation knew no "refund reversal". The sandbox rewrote the returned refund as if it
had never succeeded (its row vanished from the day's report) and no report row ever paid the money
back, so:
- a report that had settled the refund in the morning and the report of the day fetched again in
  the evening disagreed, and the 4.00 Payera put back on the PSP receivable when the refund was
  returned (`refund_reversal:<re>`) sat there for ever: no line could settle it, the aging did not
  list it (finance saw a receivable of 4.00 and an empty aging: they no longer added up);
- a PSP that reports the return as its own line (money coming back to the merchant) got a
  `missing_in_payera` discrepancy, or an unknown record type, for every returned refund, and the
  original refund line (now `failed` in Payera) was `missing_in_payera` too.
Now a report lists the refund on the day it succeeded and its return as a `refund_reversal` line
(alpha `refund_reversal`, beta `RefundReversed`: gross +amount, no fee) on the day it was returned;
both match the reversed refund, settle in the run's settlement journal, and the receivable check and
its aging tie out (docs/reconciliation.md "Returned refunds")."""

from __future__ import annotations

import time

import pytest

from ledger.models import Journal
from payments.models import Refund
from payments.services import psp_webhook_process_due
from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
from reconciliation.report_tables import run_outcome_rows
from reconciliation.selectors import receivable_aging
from tests.scenarios.conftest import assert_ledger_sound

# the report, reconcile and tie-out steps of the disputes scenarios, the same here
from tests.scenarios.test_reconciliation_disputes import _alpha_only, _reconcile, _report, _ties_out

pytestmark = [pytest.mark.scenario]

ZERO = {
    "missing_in_payera": 0,
    "missing_at_psp": 0,
    "amount_mismatch": 0,
    "currency_mismatch": 0,
    "duplicate": 0,
    "fee_mismatch": 0,
}


def _until(pred, what: str, timeout: float = 15.0, *, apply: bool = True):
    deadline = time.monotonic() + timeout
    while True:
        if apply:
            psp_webhook_process_due()  # the worker's part: apply the PSP's stored webhooks
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _day(env, psp: str) -> tuple[list[Refund], Refund]:
    """A clean sandbox day at `psp`: two payments (10.00, 20.00), a refund of each (4.00, 3.00), all
    succeeded. Returns the refunds (the 4.00 one first)."""
    for sb in env.sandboxes.values():
        sb.reset()
    env.merchant.connectors = [psp]
    env.merchant.save(update_fields=["connectors"])
    refunds = []
    for amount, back in ((1000, 400), (2000, 300)):
        p = env.wait(env.pay(amount=amount)["id"], lambda p: p["status"] == "succeeded")
        r = env.post("/v1/refunds", {"payment": p["id"], "amount": back}, expect=201)
        refunds.append(
            _until(lambda r=r: Refund.objects.filter(pk=r["id"], status="succeeded").first(), "refund never succeeded")
        )
    return refunds, refunds[0]


def _return(env, psp: str, refund: Refund, *, apply: bool = True) -> None:
    assert env.sandboxes[psp].return_refund(refund.psp_reference).status_code == 200
    if apply:
        _until(lambda: Refund.objects.filter(pk=refund.pk, status="failed").first(), "refund never reversed")
        assert Journal.objects.filter(reference=f"refund_reversal:{refund.id}").exists()


@pytest.mark.parametrize("psp", ["alpha", "beta"])
def test_a_day_with_a_returned_refund_reconciles_100_percent_and_the_receivable_ties_out(env, tmp_path, psp):
    _, returned = _day(env, psp)
    _return(env, psp, returned)
    _ties_out(psp, 3000 - 300)  # captured 30.00, refunded 3.00 (the 4.00 came back): nothing settled
    text = _report(psp)
    for _ in range(2):  # the same file again changes nothing
        assert _reconcile(tmp_path, psp, text, "day") == {"rows": 5, "matched": 5, "discrepancies": ZERO}
    lines = {(line.kind, line.gross) for line in StatementLine.objects.filter(object_id=returned.id)}
    assert lines == {("refund", -400), ("refund_reversal", 400)}
    reversal = StatementLine.objects.get(kind="refund_reversal")
    assert (reversal.fee, reversal.net, reversal.outcome) == (0, 400, "matched")
    assert reversal.journal_reference.startswith("psp_settlement:")
    _ties_out(psp, 0)
    assert receivable_aging(psp=psp) == []
    assert not Discrepancy.objects.exists()
    assert_ledger_sound()


def test_a_refund_settled_in_the_morning_and_returned_in_the_afternoon_ties_out_at_every_step(env, tmp_path):
    _, returned = _day(env, "alpha")
    morning = _report("alpha")
    assert _reconcile(tmp_path, "alpha", morning, "noon") == {"rows": 4, "matched": 4, "discrepancies": ZERO}
    _ties_out("alpha", 0)
    _return(env, "alpha", returned)
    # the PSP owes the 4.00 back: the receivable and its aging both say so
    _ties_out("alpha", 400)
    [bucket] = receivable_aging(psp="alpha")
    assert (bucket["amount"], bucket["count"]) == (400, 1)
    # the day's report fetched again in the evening: the morning's rows sent again, and the return
    evening = _report("alpha")
    assert [line.split(",")[0] for line in evening.splitlines()[1:-1]].count("refund_reversal") == 1
    assert _reconcile(tmp_path, "alpha", evening, "evening") == {"rows": 5, "matched": 5, "discrepancies": ZERO}
    # the run page's outcome table (and its CSV) counts the evening file as the command does
    run = ReconciliationRun.objects.latest("created_at")
    rows = [(r["outcome"], r["currency"], r["count"], r["gross"]) for r in run_outcome_rows([run])]
    assert rows == [("matched", "EUR", 5, 3000 - 700 + 400)]
    _ties_out("alpha", 0)
    assert receivable_aging(psp="alpha") == []
    assert not Discrepancy.objects.exists()
    assert_ledger_sound()


def test_a_returned_refund_the_report_lacks_is_missing_at_the_psp(env, tmp_path):
    _, returned = _day(env, "alpha")
    _return(env, "alpha", returned)
    without = _alpha_only(_report("alpha"), {"capture", "refund"})
    got = _reconcile(tmp_path, "alpha", without, "without")
    assert got == {"rows": 4, "matched": 4, "discrepancies": {**ZERO, "missing_at_psp": 1}}
    [d] = Discrepancy.objects.all()
    assert (d.kind, d.object_id, d.payera_amount) == ("missing_at_psp", returned.id, 400)
    rows = [(r["outcome"], r["count"], r["gross"]) for r in run_outcome_rows([d.run])]
    assert rows == [("matched", 4, 3000 - 700), ("missing_at_psp", 1, 400)]
    _ties_out("alpha", 400)


def test_a_reversal_line_for_a_refund_payera_still_holds_as_succeeded_is_healed_by_asking_the_psp(env, tmp_path):
    """The return's webhook is not applied yet (a lost or late webhook): the reversal line asks the
    PSP about the attempt, learns the refund was returned, reverses it once and settles the line."""
    _, returned = _day(env, "alpha")
    _return(env, "alpha", returned, apply=False)
    assert Refund.objects.get(pk=returned.pk).status == "succeeded"
    got = _reconcile(tmp_path, "alpha", _report("alpha"), "day")
    assert got == {"rows": 5, "matched": 5, "discrepancies": ZERO}
    assert Refund.objects.get(pk=returned.pk).status == "failed"
    assert StatementLine.objects.get(kind="refund_reversal").healed
    psp_webhook_process_due()  # the late webhook moves no money again
    assert Journal.objects.filter(reference=f"refund_reversal:{returned.id}").count() == 1
    _ties_out("alpha", 0)
    assert receivable_aging(psp="alpha") == []
    assert_ledger_sound()


def test_a_later_line_resolves_a_missing_refund_only_in_its_own_direction(env, tmp_path):
    """A refund the morning's report lacked (missing at PSP, -4.00), then returned: the evening's
    reversal line (+4.00) names the same refund but does not settle the refund itself, so it must
    not resolve that discrepancy (it did: a later line naming the item resolved it whatever its
    direction, and finance lost the 4.00 the PSP still had to take); the refund's own line does."""
    _, returned = _day(env, "alpha")
    day = _report("alpha")
    without_refund = "\n".join(line for line in day.splitlines() if returned.id not in line) + "\n"
    got = _reconcile(tmp_path, "alpha", without_refund, "morning")
    assert got == {"rows": 3, "matched": 3, "discrepancies": {**ZERO, "missing_at_psp": 1}}
    [d] = Discrepancy.objects.all()
    assert (d.object_id, d.payera_amount, d.status) == (returned.id, -400, "open")
    _return(env, "alpha", returned)
    reversal_only = _alpha_only(_report("alpha"), {"refund_reversal"})
    assert _reconcile(tmp_path, "alpha", reversal_only, "reversal") == {"rows": 1, "matched": 1, "discrepancies": ZERO}
    d.refresh_from_db()
    assert d.status == "open"  # the refund itself is still not reported
    _ties_out("alpha", -400)
    refund_only = "\n".join(
        line for line in day.splitlines() if line.startswith(("record_type", "end_of_report")) or returned.id in line
    )
    assert _reconcile(tmp_path, "alpha", refund_only + "\n", "refund") == {
        "rows": 1,
        "matched": 1,
        "discrepancies": ZERO,
    }
    d.refresh_from_db()
    assert d.status == "resolved"
    _ties_out("alpha", 0)
    assert receivable_aging(psp="alpha") == []
    assert_ledger_sound()


def test_a_refund_returned_the_same_day_that_the_report_lacks_entirely_opens_both_halves(env, tmp_path):
    """A refund made and returned the same day, and the PSP's report names it in no line (neither
    the refund nor its reversal). Reconciliation opened one "missing at PSP" (+4.00, the reversal)
    and nothing for the refund itself (-4.00): the refund was `failed` by then, so the refund half
    was never looked for, and a discrepancy of one direction hid the other (one per object). Finance
    saw one discrepancy of +4.00 for an item whose two halves the PSP both still owed a line for.
    Now both halves are looked for, each by the line of its own direction."""
    _, returned = _day(env, "alpha")
    _return(env, "alpha", returned)
    day = _report("alpha")
    without = "\n".join(line for line in day.splitlines() if returned.id not in line) + "\n"
    got = _reconcile(tmp_path, "alpha", without, "without")
    assert got == {"rows": 3, "matched": 3, "discrepancies": {**ZERO, "missing_at_psp": 2}}, got
    assert sorted(Discrepancy.objects.values_list("object_id", "payera_amount")) == [
        (returned.id, -400), (returned.id, 400)]
