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
