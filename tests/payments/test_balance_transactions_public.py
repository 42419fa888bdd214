"""Review 14c (fixed by fix14e): what GET /v1/balance_transactions shows a merchant of a journal the platform's staff
posted to its balance (real sandbox payments, their real alpha report, the reconciliation services)."""

from __future__ import annotations

import pytest

from reconciliation.services import suspense_reallocate
from tests.conftest import client_for
from tests.merchants.factories import make_api_key
from tests.reconciliation.conftest import a_day_of_payments, day  # noqa: F401 (fixtures)
from tests.reconciliation.test_reconcile_resolutions import finance
from tests.reconciliation.test_reconcile_suspense import in_suspense

pytestmark = pytest.mark.django_db(transaction=True)

REASON = "INTERNAL: alpha double-paid batch 7; mer_other's disputed line, see ticket FIN-4411"


def test_a_suspense_move_to_a_merchant_shows_no_internal_id_or_staff_note(a_day_of_payments):  # noqa: F811
    """A merchant sees its own money, not the platform's internal records.

    What happens: finance moves money out of suspense to a merchant (`suspense_reallocate(...,
    to="merchant")`, reconciliation/services/suspense.py). The journal's reference is
    `recon_suspense:<discrepancy pk>:<n>` (a BigAutoField: the platform's count of reconciliation
    discrepancies, what docs/decisions/0003 keeps out of every public id, and why `txn_` ids were made
    opaque in session 12) and its memo is `discrepancy <pk>: <the staff member's reason>` — free text
    written for finance, which may name PSP batches, tickets or other merchants.
    `GET /v1/balance_transactions` shows both to the merchant as `reference` and `description`
    (payments/api/payments.py `_txn`: journal reference and memo as stored).
    Expected: neither the discrepancy's sequential key nor the staff reason reaches the merchant.
    Suspected: payments/api/payments.py `_txn` / ledger/selectors.py `balance_transaction_list` (every
    journal's reference and memo are public), with the reference and memo chosen in
    reconciliation/services/suspense.py and discrepancies.py `_post`."""
    alpha_merchant, _ = a_day_of_payments
    d = in_suspense()
    suspense_reallocate(discrepancy_id=d.pk, user=finance("fin1"), reason=REASON, to="merchant",
                        merchant_id=alpha_merchant.id, currency="EUR", amount=730)  # fmt: skip
    client = client_for(make_api_key(alpha_merchant).secret)
    data = client.get("/v1/balance_transactions?limit=100").json()["data"]
    moved = [t for t in data if t["amount"] == 730 and t["type"] == "adjustment"]
    assert len(moved) == 1, data
    shown = moved[0]["reference"] + " " + moved[0]["description"]
    assert f":{d.pk}" not in moved[0]["reference"], f"the discrepancy's key is shown to the merchant: {shown!r}"
    assert "FIN-4411" not in shown and "mer_other" not in shown, f"the staff note is shown to the merchant: {shown!r}"
    # journals of the merchant's own objects keep their references (att_…: public ids)
    assert any(t["reference"].startswith("capture:att_") for t in data), data
    # the merchant's statement (reconciliation/statements.py) shows the same public text
    from datetime import UTC, datetime, timedelta

    from reconciliation.statements import merchant_statement

    statement = merchant_statement(merchant_id=alpha_merchant.id, start=datetime(2000, 1, 1, tzinfo=UTC),
                                   end=datetime.now(UTC) + timedelta(days=1))  # fmt: skip
    rows = [t for s in statement.sections for t in s.transactions if t.amount == 730 and t.type == "adjustment"]
    assert len(rows) == 1 and (rows[0].reference, rows[0].description) == (moved[0]["reference"],
                                                                           moved[0]["description"])  # fmt: skip
    assert rows[0].description == "Reconciliation adjustment"
