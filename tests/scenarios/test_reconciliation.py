"""End to end, on PostgreSQL and on the embedded SQLite default: payments and refunds through the
API on alpha and beta (beta completing by its webhooks), the sandboxes' day written by
`manage.py sandbox_settlement_report`, then `manage.py reconcile --json` (CONTRACT.md): every row
matches and each PSP's receivable ties out; the same file again changes nothing."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from reconciliation.models import ReconciliationRun
from reconciliation.selectors import receivable_check
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = [pytest.mark.scenario]

ZERO = {"missing_in_payera": 0, "missing_at_psp": 0, "amount_mismatch": 0, "currency_mismatch": 0, "duplicate": 0,
        "fee_mismatch": 0}


def test_a_day_through_the_api_reconciles_100_percent_on_both_psps(env, tmp_path):
    for sb in env.sandboxes.values():
        sb.reset()
    # alpha: two payments, one partly refunded
    p1, p2 = env.pay(amount=3_000), env.pay(amount=1_250)
    assert p1["status"] == p2["status"] == "succeeded"
    env.post("/v1/refunds", {"payment": p1["id"], "amount": 500}, expect=201)
    # beta (asynchronous): a payment completed by webhook, then refunded in full
    env.merchant.connectors = ["beta"]
    env.merchant.save(update_fields=["connectors"])
    p3 = env.wait(env.pay(amount=2_000)["id"], lambda p: p["status"] == "succeeded")
    env.post("/v1/refunds", {"payment": p3["id"], "amount": 2_000}, expect=201)
    env.wait(p3["id"], lambda p: p["amount_refunded"] == 2_000)

    for psp, rows in (("alpha", 3), ("beta", 2)):
        report = StringIO()
        call_command("sandbox_settlement_report", "--psp", psp, stdout=report)
        path = tmp_path / f"{psp}.csv"
        path.write_text(report.getvalue())
        for _ in range(2):
            out = StringIO()
            call_command("reconcile", str(path), "--psp", psp, "--json", stdout=out, stderr=StringIO())
            assert json.loads(out.getvalue()) == {"rows": rows, "matched": rows, "discrepancies": ZERO}
        assert all(c["ok"] for c in receivable_check(psp=psp)), receivable_check(psp=psp)
    assert ReconciliationRun.objects.count() == 2
    assert_ledger_sound()


def test_a_line_whose_net_is_not_gross_minus_fee_posts_what_arrived_and_a_failed_import_frees_its_lines(env, tmp_path):
    """On both databases (COPY and the Python parser alike): a line whose net is not gross - fee is
    a fee difference booked as the net that arrived; an import the ledger refuses (a frozen
    receivable) marks its run failed and leaves no lines: the same file then imports."""
    from ledger.models import AccountStatus, Journal
    from ledger.services import account_set_status
    from ledger.types import Accounts
    from reconciliation.models import StatementLine

    for sb in env.sandboxes.values():
        sb.reset()
    assert env.pay(amount=3_000)["status"] == "succeeded"
    report = StringIO()
    call_command("sandbox_settlement_report", "--psp", "alpha", stdout=report)
    header, row, end = report.getvalue().splitlines()
    cols = row.split(",")
    cols[10] = str(int(cols[10]) + 7)  # the PSP paid 0.07 more than gross - fee
    path = tmp_path / "alpha.csv"
    path.write_text("\n".join([header, ",".join(cols), end]) + "\n")

    def reconcile() -> dict:
        out = StringIO()
        call_command("reconcile", str(path), "--psp", "alpha", "--json", stdout=out, stderr=StringIO())
        return json.loads(out.getvalue())

    receivable = Accounts.psp_receivable("alpha", "EUR")
    account_set_status(key=receivable, status=AccountStatus.FROZEN)
    with pytest.raises(Exception, match="frozen"):
        reconcile()
    assert ReconciliationRun.objects.get().status == "failed" and not StatementLine.objects.exists()
    account_set_status(key=receivable, status=AccountStatus.ACTIVE)
    assert reconcile() == {"rows": 1, "matched": 0, "discrepancies": {**ZERO, "fee_mismatch": 1}}
    [journal] = Journal.objects.filter(kind="settlement")
    assert ReconciliationRun.objects.get().status == "done"
    assert all(c["ok"] for c in receivable_check(psp="alpha")), receivable_check(psp="alpha")
    assert_ledger_sound()
