"""`manage.py scan_card_numbers` (PCI DSS data discovery): finds card numbers stored in clear in
any text or JSON column (table, column, row id, masked sample), exits 1 when it finds any, and
with --mask masks those of mutable tables (JSON stays valid, each change audited) while the
ledger's append-only rows are reported "immutable, cannot be masked". Set-based: its query count
does not grow with the rows."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ledger import services as ledger_services
from ledger.models import Journal
from ledger.types import transfer_lines
from payera.audit.models import AuditLogEntry
from payera.merchants.models import Merchant
from payera.merchants.services import merchant_create
from payments.models import PspWebhook
from tests.ledger.conftest import make_account

pytestmark = pytest.mark.django_db

PAN = "4111111111111111"
AMEX = "3782 822463 10005"
MASKED = "411111******1111"


def _scan(*args) -> tuple[int, dict, str]:
    out = io.StringIO()
    code = 0
    try:
        call_command("scan_card_numbers", "--json", *args, stdout=out)
    except SystemExit as exit_:
        code = exit_.code
    text = out.getvalue()
    return code, json.loads(text), text


def _merchant(name: str) -> Merchant:
    """A merchant named `name`, written as an old row or a raw write would have (no guard on the way)."""
    merchant = merchant_create(name="Shop", connectors=["alpha"])
    Merchant.objects.filter(pk=merchant.pk).update(name=name)
    return merchant


def _webhook(body: str, headers: dict | None = None) -> PspWebhook:
    """A stored PSP webhook with `body`, as one stored before the inbox masked bodies."""
    hook = PspWebhook.objects.create(
        connector="alpha", event_id=f"evt_{len(body)}", kind="x", reference="r", body="{}", headers={}
    )
    PspWebhook.objects.filter(pk=hook.pk).update(body=body, headers=headers or {})
    return hook


def _journal_with_a_card_number() -> str:
    owner = "mer_scan0000000000000000"
    lines = transfer_lines(debit=make_account(owner, "a"), credit=make_account(owner, "b"), amount=100)
    result = ledger_services.journal_post(
        reference="scan:1", lines=lines, occurred_at=datetime.now(UTC), memo=f"refund for card {PAN}"
    )
    return str(result.journal_id)


def _found(report) -> dict[tuple[str, str, str], dict]:
    return {(f["table"], f["column"], f["row_id"]): f for f in report["findings"]}


def test_nothing_found_exits_0():
    _merchant("Plain shop")
    _webhook('{"order": 8815123456789013, "amount": 1250}')  # Luhn-valid, no scheme's prefix: no card
    # A card-like run of digits glued to letters (inside a hex hash or an id) is chance, not a card:
    # masking it would break the id.
    _webhook('{"id": "evt_1f506914378282246310005ab", "hash": "ab4111111111111111cd"}')
    code, report, _ = _scan()
    assert code == 0 and report["found"] == 0 and report["columns_scanned"] > 50


def test_card_numbers_in_text_and_json_columns_are_reported_masked_and_exit_1():
    merchant = _merchant(f"Shop {PAN}")
    hook = _webhook(json.dumps({"card": {"number": int(PAN)}, "note": f"amex {AMEX}"}), {"x-note": f"card {PAN}"})
    journal_id = _journal_with_a_card_number()
    code, report, text = _scan()
    assert code == 1
    found = _found(report)
    assert found[("merchants_merchant", "name", merchant.pk)]["sample"] == f"Shop {MASKED}"
    assert found[("merchants_merchant", "name", merchant.pk)]["status"] == "found"
    assert ("payments_pspwebhook", "body", str(hook.pk)) in found
    assert ("payments_pspwebhook", "headers", str(hook.pk)) in found  # a JSON column
    journal = found[("ledger_journal", "memo", journal_id)]
    assert journal["status"] == "immutable" and journal["note"] == "immutable, cannot be masked"
    assert PAN not in text and "822463" not in text and "3782 8224" not in text


def test_mask_masks_mutable_rows_keeps_json_valid_audits_and_leaves_the_ledger(capsys):
    merchant = _merchant(f"Shop {PAN}")
    hook = _webhook(
        json.dumps({"card": {"number": int(PAN)}, "note": f"amex {AMEX}", "id": 8815123456789013}),
        {"x-note": f"card {PAN}"},
    )
    journal_id = _journal_with_a_card_number()

    code, report, text = _scan("--mask")
    assert code == 1 and PAN not in text
    statuses = {(f["table"], f["column"]): f["status"] for f in report["findings"]}
    assert statuses[("merchants_merchant", "name")] == "masked"
    assert statuses[("payments_pspwebhook", "body")] == "masked"
    assert statuses[("payments_pspwebhook", "headers")] == "masked"
    assert statuses[("ledger_journal", "memo")] == "immutable"

    merchant.refresh_from_db()
    hook.refresh_from_db()
    assert merchant.name == f"Shop {MASKED}"
    body = json.loads(hook.body)  # still JSON
    assert body == {"card": {"number": MASKED}, "note": "amex 378282*****0005", "id": 8815123456789013}
    assert hook.headers == {"x-note": f"card {MASKED}"}
    assert PAN in Journal.objects.get(pk=journal_id).memo  # untouched: append-only

    entries = AuditLogEntry.objects.filter(additional_data__command="scan_card_numbers --mask")
    assert {(e.additional_data["table"], e.additional_data["column"], e.object_pk) for e in entries} == {
        ("merchants_merchant", "name", merchant.pk),
        ("payments_pspwebhook", "body", str(hook.pk)),
        ("payments_pspwebhook", "headers", str(hook.pk)),
    }
    assert all(PAN not in json.dumps(e.changes) + e.changes_text for e in entries)

    code, again, _ = _scan()  # what is left: the ledger's
    assert code == 1 and {(f["table"], f["status"]) for f in again["findings"]} == {("ledger_journal", "immutable")}


def test_a_table_can_be_scanned_alone():
    _merchant(f"Shop {PAN}")
    code, report, _ = _scan("--table", "payments_pspwebhook")
    assert code == 0 and report["tables_scanned"] == 1


def test_the_text_report_masks_and_names_table_column_and_row(capsys):
    merchant = _merchant(f"Shop {PAN}")
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("scan_card_numbers", stdout=out)
    assert exit_.value.code == 1
    text = out.getvalue()
    assert f"merchants_merchant.name id={merchant.pk} [found]: Shop {MASKED}" in text and PAN not in text


def test_the_scan_is_set_based_its_queries_do_not_grow_with_the_rows():
    """One query per table whatever the rows: 10 or 300 candidate rows cost the same queries."""

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            _scan("--table", "payments_pspwebhook")
        return len(ctx.captured_queries)

    for i in range(10):
        PspWebhook.objects.create(
            connector="alpha", event_id=f"a{i}", kind="x", reference="r", body=f"order 1234567890123{i:03d}", headers={}
        )
    few = queries()
    PspWebhook.objects.bulk_create(
        PspWebhook(
            connector="alpha", event_id=f"b{i}", kind="x", reference="r", body=f"order 1234567890123{i:03d}", headers={}
        )
        for i in range(300)
    )
    assert queries() == few
