"""A won dispute through reconciliation, end to end on PostgreSQL and on the embedded SQLite default:
card 4000000000000259 is disputed by the sandbox PSP after capture (webhook), the merchant answers
with evidence through the API, the network decides (`POST /_sandbox/disputes/<id>/close`), and the
sandbox's day (`manage.py sandbox_settlement_report`) lists the capture, the chargeback and the
won dispute's reversal; `manage.py reconcile --json` matches them, and the PSP receivable check and
its aging tie out at every step (docs/reconciliation.md)."""

from __future__ import annotations

import datetime as dt
import json
import time
from io import StringIO

import pytest
from django.core.management import call_command

from ledger.models import Journal
from payments.models import Dispute
from payments.services import psp_webhook_process_due
from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
from reconciliation.selectors import receivable_aging, receivable_check
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = [pytest.mark.scenario]

ZERO = {"missing_in_payera": 0, "missing_at_psp": 0, "amount_mismatch": 0, "currency_mismatch": 0, "duplicate": 0,
        "fee_mismatch": 0}
AMOUNT = 1_000


def _until(pred, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        psp_webhook_process_due()  # the worker's part: apply the PSP's stored webhooks
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _disputed(env, psp: str) -> Dispute:
    """A clean sandbox day, a payment at `psp` with the dispute card, and its dispute (open)."""
    for sb in env.sandboxes.values():
        sb.reset()
    env.merchant.connectors = [psp]
    env.merchant.save(update_fields=["connectors"])
    p = env.wait(env.pay("4000000000000259", amount=AMOUNT)["id"], lambda p: p["status"] == "succeeded")
    return _until(lambda: Dispute.objects.filter(payment_id=p["id"]).first(), "no dispute arrived")


def _decided(env, d: Dispute, status: str) -> Dispute:
    if status == "won":
        env.post(f"/v1/disputes/{d.id}/evidence", {"text": "Signed delivery receipt attached."})
    assert env.sandboxes[d.connector].close_dispute(d.psp_dispute_id, status).status_code == 200
    return _until(lambda: Dispute.objects.filter(pk=d.pk, status=status).first(), f"dispute never {status}")


def _report(psp: str, day: dt.date | None = None) -> str:
    out = StringIO()
    call_command("sandbox_settlement_report", "--psp", psp, *(["--date", day.isoformat()] if day else []), stdout=out)
    return out.getvalue()


def _reconcile(tmp_path, psp: str, text: str, name: str) -> dict:
    path = tmp_path / f"{psp}-{name}.csv"
    path.write_text(text)
    out = StringIO()
    call_command("reconcile", str(path), "--psp", psp, "--json", stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


def _alpha_only(text: str, kinds: set[str]) -> str:
    """Alpha's report with only the rows of these record types (header and trailer kept)."""
    header, *body, trailer = text.splitlines()
    return "\n".join([header, *(line for line in body if line.split(",")[0] in kinds), trailer]) + "\n"


def _ties_out(psp: str, ledger: int) -> None:
    """The receivable check is `ok` at `ledger`, and the aging buckets add up to it."""
    [check] = receivable_check(psp=psp)
    assert check == {"currency": "EUR", "ledger": ledger, "unsettled": ledger, "ok": True}, check
    assert sum(b["amount"] for b in receivable_aging(psp=psp)) == ledger


@pytest.mark.parametrize("psp", ["alpha", "beta"])
def test_a_won_dispute_reconciles_100_percent_and_the_receivable_ties_out(env, tmp_path, psp):
    d = _decided(env, _disputed(env, psp), "won")
    _ties_out(psp, AMOUNT)  # captured, charged back and given back: the PSP owes the amount
    text = _report(psp)
    for _ in range(2):  # the same file again changes nothing
        assert _reconcile(tmp_path, psp, text, "day") == {"rows": 3, "matched": 3, "discrepancies": ZERO}
    journals = Journal.objects.count()
    assert ReconciliationRun.objects.count() == 1
    kinds = dict(StatementLine.objects.values_list("kind", "gross"))
    assert kinds == {"capture": AMOUNT, "chargeback": -AMOUNT, "chargeback_reversal": AMOUNT}
    assert StatementLine.objects.get(kind="chargeback_reversal").object_id == d.id
    _ties_out(psp, 0)
    assert receivable_aging(psp=psp) == []
    assert not Discrepancy.objects.exists() and not Journal.objects.filter(kind="adjustment").exists()
    # a re-sent report (other bytes, same rows): duplicates, nothing settled twice
    again = _reconcile(tmp_path, psp, text + "\n", "again")
    assert again["matched"] == 0 and again["discrepancies"] == {**ZERO, "duplicate": 3}
    assert Journal.objects.count() == journals
    _ties_out(psp, 0)
    assert_ledger_sound()


def test_the_receivable_and_its_aging_tie_out_at_every_step_of_a_won_dispute(env, tmp_path):
    d = _disputed(env, "alpha")
    _ties_out("alpha", 0)  # captured +1000, charged back -1000, nothing settled
    day = _report("alpha")
    assert _reconcile(tmp_path, "alpha", _alpha_only(day, {"capture"}), "captures")["matched"] == 1
    _ties_out("alpha", -AMOUNT)  # the PSP paid the capture; the chargeback is still to come
    assert _reconcile(tmp_path, "alpha", _alpha_only(day, {"chargeback"}), "chargebacks")["matched"] == 1
    _ties_out("alpha", 0)
    d = _decided(env, d, "won")
    _ties_out("alpha", AMOUNT)  # won: the PSP owes the amount back
    [bucket] = receivable_aging(psp="alpha")
    assert (bucket["amount"], bucket["count"]) == (AMOUNT, 1)
    got = _reconcile(tmp_path, "alpha", _alpha_only(_report("alpha"), {"chargeback_reversal"}), "reversals")
    assert got == {"rows": 1, "matched": 1, "discrepancies": ZERO}
    _ties_out("alpha", 0)
    assert receivable_aging(psp="alpha") == []
    assert not Discrepancy.objects.exists()
    assert_ledger_sound()


def test_a_reversal_row_with_another_amount_is_an_amount_mismatch(env, tmp_path):
    _decided(env, _disputed(env, "beta"), "won")
    lines = _report("beta").split("\r\n")
    [i] = [n for n, line in enumerate(lines) if ";ChargebackReversed;" in line]
    cols = lines[i].split(";")
    assert (cols[8], cols[9], cols[10]) == ("10.00", "0.00", "10.00")
    cols[8] = cols[10] = "10.50"
    lines[i] = ";".join(cols)
    got = _reconcile(tmp_path, "beta", "\r\n".join(lines), "changed")
    assert got == {"rows": 3, "matched": 2, "discrepancies": {**ZERO, "amount_mismatch": 1}}
    dsc = Discrepancy.objects.get()
    assert (dsc.psp_amount, dsc.payera_amount, dsc.difference) == (1_050, AMOUNT, 50)
    _ties_out("beta", AMOUNT)  # the reversal did not settle: the PSP still owes it


@pytest.mark.parametrize("status", ["open", "lost"])
def test_a_reversal_row_for_a_dispute_not_won_is_missing_in_payera(env, tmp_path, status):
    d = _disputed(env, "alpha")
    if status == "lost":
        d = _decided(env, d, "lost")
    day = _report("alpha")
    header, *body, trailer = day.splitlines()
    [chargeback] = [line for line in body if line.startswith("chargeback,")]
    cols = chargeback.split(",")  # the PSP says the merchant won: the amount back, no fee
    cols[0], cols[8], cols[9], cols[10] = "chargeback_reversal", str(AMOUNT), "0", str(AMOUNT)
    got = _reconcile(tmp_path, "alpha", "\n".join([header, *body, ",".join(cols), trailer]) + "\n", "forged")
    assert got == {"rows": 3, "matched": 2, "discrepancies": {**ZERO, "missing_in_payera": 1}}
    dsc = Discrepancy.objects.get()
    assert (dsc.kind, dsc.reference, dsc.psp_amount) == ("missing_in_payera", d.attempt_id, AMOUNT)
    _ties_out("alpha", 0)  # nothing of it posted


def test_a_won_dispute_the_report_lacks_is_missing_at_psp_until_a_later_report_settles_it(env, tmp_path):
    d = _decided(env, _disputed(env, "alpha"), "won")
    day = _report("alpha")
    # a report of another day (empty): the reversal is outside its period, only aging
    yesterday = _report("alpha", dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    assert _reconcile(tmp_path, "alpha", yesterday, "yesterday") == {"rows": 0, "matched": 0, "discrepancies": ZERO}
    # the day without its reversal row: the chargeback line names the dispute, yet the reversal is missing
    got = _reconcile(tmp_path, "alpha", _alpha_only(day, {"capture", "chargeback"}), "without")
    assert got == {"rows": 2, "matched": 2, "discrepancies": {**ZERO, "missing_at_psp": 1}}
    missing = Discrepancy.objects.get()
    assert (missing.kind, missing.object_id, missing.status) == ("missing_at_psp", d.id, "open")
    assert (missing.payera_amount, missing.difference) == (AMOUNT, -AMOUNT)
    _ties_out("alpha", AMOUNT)
    # the reversal in a later file settles it and resolves the discrepancy (no adjustment)
    got = _reconcile(tmp_path, "alpha", _alpha_only(day, {"chargeback_reversal"}), "later")
    assert got == {"rows": 1, "matched": 1, "discrepancies": ZERO}
    missing.refresh_from_db()
    assert missing.status == "resolved" and missing.adjustment_reference == ""
    assert missing.resolved_by.startswith("reconciliation:")
    _ties_out("alpha", 0)
    assert_ledger_sound()
