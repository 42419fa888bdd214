"""A card number in a text cell of a settlement report (review 14a; real sandbox payments over
HTTP, the sandboxes' own reports, imported on PostgreSQL, exported through the admin)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from ledger.models import Journal
from payera.staff.access import ACCESS_ALL_MERCHANTS
from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
from reconciliation.services import reconcile_import
from tests.backoffice.leaks import leaks
from tests.backoffice.staff import make_staff, otp_force_login
from tests.reconciliation.sandbox_day import report

pytestmark = pytest.mark.django_db(transaction=True)

PAN = "4111111111111111"


def test_a_card_number_in_a_report_text_cell_never_reaches_the_ledger_or_the_csv_export(a_day_of_payments, client):
    """No PAN in logs, errors, events or admin (../shared/ARCHITECTURE.md; the ledger is
    append-only, so what lands there can never be masked: payera/backoffice/card_scan.py only
    reports it). Session 12 masked a card number that a shifted column puts into an *amount*
    (the row error quotes it); the same shifted column can put it into a *text* cell of a row
    that still parses.

    What was wrong: the payout batch of every record of the alpha report holds a card number (a
    column shifted by the PSP's export). The rows match, and the card number is copied in clear
    into (1) each StatementLine (`payout_batch_id`), shown in the admin and written by the
    "Export the lines of the selected runs (CSV)" action, and (2) the settlement journal's
    reference `psp_settlement:<run>:EUR:<batch>`, its memo and metadata
    (reconciliation/services/reconcile.py `_journal_sql` / `_post_settlement`), which no one can
    ever mask. What holds now: a file that may hold a card number (a fast scan of its bytes) is
    read by the adapter's Python parser, and every card number in a row's text cells is masked
    (BIN and last 4, as the row errors quote it) before anything is stored; the row imports as it
    stands (its money is right: the batch id is only a label), and the run counts such rows
    (`summary["card_numbers_masked"]`)."""
    lines = report("alpha").decode().splitlines()
    for i in range(1, len(lines) - 1):
        cols = lines[i].split(",")
        cols[2] = PAN  # payout_batch
        lines[i] = ",".join(cols)
    result = reconcile_import(psp="alpha", raw=("\n".join(lines) + "\n").encode())
    assert result.rows == 4

    user = make_staff("fin", role="finance")
    app, codename = ACCESS_ALL_MERCHANTS.split(".")
    user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    otp_force_login(client, user)
    export = client.post(
        "/admin/reconciliation/reconciliationrun/",
        {"action": "export_lines", "_selected_action": [result.run_id]},
    )
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")
    journals = [
        f"{j.reference} {j.memo} {j.metadata}" for j in Journal.objects.filter(reference__startswith="psp_settlement:")
    ]
    assert journals, "the settlement was posted"
    assert leaks(" ".join(journals)) == [], journals
    stored = " ".join(StatementLine.objects.values_list("payout_batch_id", flat=True))
    assert leaks(stored) == [] and leaks(export.content.decode()) == []
    run = ReconciliationRun.objects.get(pk=result.run_id)
    assert run.summary["card_numbers_masked"] == 4 and run.summary["matched"] == 4
    assert set(StatementLine.objects.values_list("payout_batch_id", flat=True)) == {"411111******1111"}


def test_a_card_number_in_a_beta_report_text_cell_is_masked_spaced_or_not(a_day_of_payments):
    """Beta's reports (Python parser): a card number split in groups in the batch cell, and one in
    the operation reference cell of another row, are stored masked; the rows' money is settled and
    nothing in the lines, the journals or the discrepancies holds the number in clear."""
    lines = report("beta").decode().split("\r\n")
    header_at = next(i for i, line in enumerate(lines) if line.startswith("Batch Number;"))
    header = lines[header_at].split(";")
    records = [i for i in range(header_at + 1, len(lines)) if lines[i]]
    for n, i in enumerate(records):
        cols = lines[i].split(";")
        cols[header.index("Batch Number")] = "PB 4111 1111 1111 1111"
        if n == 0:
            cols[header.index("Modification Reference")] = "5555-5555-5555-4444"
        lines[i] = ";".join(cols)
    result = reconcile_import(psp="beta", raw="\r\n".join(lines).encode())
    run = ReconciliationRun.objects.get(pk=result.run_id)
    assert run.summary["card_numbers_masked"] == len(records) and run.summary["parser"] == "python"
    stored = list(StatementLine.objects.filter(run=run).values_list("payout_batch_id", "row_key"))
    assert {b for b, _ in stored} == {"PB 411111******1111"}
    assert any("555555******4444" in k for _, k in stored)
    journals = [
        f"{j.reference} {j.memo} {j.metadata}" for j in Journal.objects.filter(reference__startswith="psp_settlement:")
    ]
    assert journals and leaks(" ".join(journals)) == []
    assert leaks(" ".join(f"{b} {k}" for b, k in stored)) == []
    assert leaks(" ".join(str(d.__dict__) for d in Discrepancy.objects.all())) == []


def test_a_card_number_in_the_uploaded_files_name_is_stored_masked(day):
    """What was wrong: the run kept the file's name as given (`_run_start`: `file_name[:255]`), and
    the run list, the run page and the admin search show it: a report saved under a name holding a
    card number (a chargeback's export named after the card, a PAN pasted as the name) put the full
    number in the admin. What holds now: the name is masked as every other text of the import
    (`payera.core.masking.mask_text`: BIN and last 4)."""
    result = reconcile_import(psp="alpha", raw=report("alpha"), file_name="dispute 4111 1111 1111 1111.csv",
                              source="upload")  # fmt: skip
    name = ReconciliationRun.objects.get(pk=result.run_id).file_name
    assert "4111 1111 1111 1111" not in name and "1111" in name and name.endswith(".csv"), name
