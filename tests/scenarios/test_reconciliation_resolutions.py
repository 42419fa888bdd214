"""End to end, on PostgreSQL and on the embedded SQLite default: a day of alpha payments through
the API, its report with one capture settled for another amount and one capture left out; finance
settles the first as reported and writes the second off. The money that arrived is in bank cash,
the loss and the gap in reconciliation differences, the receivable check is `ok`, the aging empty
and the ledger sound (the resolutions' SQL runs on both databases)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from ledger import selectors as ledger_selectors
from ledger.types import Accounts
from payera.staff.access import staff_grant_merchant
from reconciliation.models import Discrepancy
from reconciliation.selectors import receivable_aging, receivable_check
from reconciliation.services import discrepancy_settle_as_reported, discrepancy_write_off, reconcile_import
from tests.backoffice.staff import make_staff
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = [pytest.mark.scenario]


def balance(key) -> int:
    return ledger_selectors.account_balance(key=key).posted


def test_finance_settles_a_mismatch_as_reported_and_writes_off_a_missing_capture(env):
    for sb in env.sandboxes.values():
        sb.reset()
    for amount in (3_000, 1_250, 700):
        assert env.pay(amount=amount)["status"] == "succeeded"
    out = StringIO()
    call_command("sandbox_settlement_report", "--psp", "alpha", stdout=out)
    lines = out.getvalue().splitlines()
    rows = {int(line.split(",")[8]): line.split(",") for line in lines[1:-1]}
    rows[1_250][8], rows[1_250][10] = str(1_350), str(int(rows[1_250][10]) + 100)  # the PSP paid 1.00 more
    body = [",".join(rows[3_000]), ",".join(rows[1_250])]  # the 700 capture is left out
    raw = "\n".join([lines[0], *body, lines[-1]]) + "\n"
    result = reconcile_import(psp="alpha", raw=raw.encode())
    found = result.discrepancies
    assert (result.matched, found["amount_mismatch"], found["missing_at_psp"]) == (1, 1, 1)
    [aged] = receivable_aging(psp="alpha")
    assert (aged["amount"], aged["count"]) == (700 + 1_250, 2)
    bank = balance(Accounts.bank_cash("EUR"))
    finance = make_staff("fin", role="finance")
    staff_grant_merchant(user=finance, merchant_id=Discrepancy.objects.get(kind="amount_mismatch").merchant_id)
    mismatch = Discrepancy.objects.get(kind="amount_mismatch")
    discrepancy_settle_as_reported(discrepancy_id=mismatch.pk, user=finance, reason="alpha paid 13.50")
    missing = Discrepancy.objects.get(kind="missing_at_psp")
    discrepancy_write_off(discrepancy_id=missing.pk, user=finance, reason="alpha will never pay it")
    assert balance(Accounts.bank_cash("EUR")) - bank == int(rows[1_250][10])
    assert balance(Accounts.reconciliation_differences("EUR")) == 700 - 100  # the loss, less the gain
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check
    assert receivable_aging(psp="alpha") == []
    assert_ledger_sound()
