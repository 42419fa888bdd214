"""A lost REFUND webhook healed by reconciliation, end to end on PostgreSQL and on the embedded
SQLite default: beta (asynchronous) completes a refund and its REFUND notification goes astray
(delivered, but not to Payera), so the refund stays `pending` in Payera and nothing is posted;
the PSP's day lists the refund, and `manage.py reconcile` asks beta about the attempt, records the
refund as its webhook would have, matches and settles the line once (docs/reconciliation.md, "Heal")."""

from __future__ import annotations

import pytest

from ledger.models import Journal
from payments.models import Refund
from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
from reconciliation.selectors import receivable_aging
from tests.scenarios.conftest import assert_ledger_sound
from tests.scenarios.test_reconciliation_disputes import ZERO, _astray, _back, _reconcile, _report, _ties_out

pytestmark = [pytest.mark.scenario]

AMOUNT = 1_000


def test_a_lost_refund_webhook_is_healed_by_the_refund_line(env, psp_webhooks, tmp_path):
    for sb in env.sandboxes.values():
        sb.reset()
    env.merchant.connectors = ["beta"]
    env.merchant.save(update_fields=["connectors"])
    p = env.wait(env.pay(amount=AMOUNT)["id"], lambda p: p["status"] == "succeeded")
    attempt_id = p["attempts"][-1]["id"]
    _astray(env, psp_webhooks, "beta")
    refund = env.post("/v1/refunds", {"payment": p["id"], "amount": 400}, expect=201)
    assert refund["status"] == "pending"
    lost = psp_webhooks.wait_for(
        lambda h: h.json().get("eventCode") == "REFUND" and h.json()["paymentReference"] == attempt_id
    )
    assert lost.json()["success"] is True  # the PSP refunded it; Payera never heard
    _back(env, "beta")
    assert Refund.objects.get(pk=refund["id"]).status == "pending"
    assert not Journal.objects.filter(reference=f"refund:{refund['id']}").exists()
    _ties_out("beta", AMOUNT)  # Payera knows the capture only

    text = _report("beta")
    for _ in range(2):  # the same file again changes nothing
        assert _reconcile(tmp_path, "beta", text, "day") == {"rows": 2, "matched": 2, "discrepancies": ZERO}
    run = ReconciliationRun.objects.get()
    assert run.summary["healed"] == 1
    assert Refund.objects.get(pk=refund["id"]).status == "succeeded"
    assert env.get(p["id"])["amount_refunded"] == 400
    assert Journal.objects.filter(reference=f"refund:{refund['id']}").count() == 1
    line = StatementLine.objects.get(kind="refund")
    assert (line.outcome, line.healed, line.object_id) == ("matched", True, refund["id"])
    assert Journal.objects.filter(reference=line.journal_reference).count() == 1  # settled once
    _ties_out("beta", 0)
    assert receivable_aging(psp="beta") == []
    assert not Discrepancy.objects.exists()
    assert_ledger_sound()
