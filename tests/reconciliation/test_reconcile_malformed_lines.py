"""How a malformed row of a settlement report is read (real sandbox payments over HTTP,
the sandbox's own report, imported on PostgreSQL; review 14a)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from reconciliation.models import ReconciliationRun, StatementLine
from tests.reconciliation.sandbox_day import report

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_beta_row_with_a_stray_quote_is_one_row_error_and_the_rows_after_it_still_import(a_day_of_payments, tmp_path):
    """A malformed row must become one row error with its own line number, and the other rows of
    the file must import (docs/reconciliation.md, "A malformed row ... the other rows import").

    What was wrong: beta's parser (psp_adapters/beta/settlement.py `read`) hands the record lines to
    `csv.DictReader` with the default quoting, so a field of one row that starts with `"` and is
    never closed (a stray quote in one cell) swallows every following line of the file into that
    one field. The import then reports ONE row error, at the LAST line of the file (not the bad
    row's), and silently drops every good row after it: captures and refunds the PSP did pay are
    not settled (the bank cash is never posted) and, being absent, open "missing at PSP"
    discrepancies for money that arrived. What holds now: both parsers read one record per line
    (psp_adapters/report_lines.py): the bad row is a row error on its own line, the two good rows
    after it match."""
    lines = report("beta").decode().split("\r\n")
    header_at = next(i for i, line in enumerate(lines) if line.startswith("Batch Number;"))
    records = [i for i in range(header_at + 1, len(lines)) if lines[i]]
    assert len(records) == 3  # two captures and a refund of the beta merchant
    bad = records[0]
    lines[bad] = '"' + lines[bad]  # a stray quote opening the first cell of the first record
    path = tmp_path / "beta.csv"
    path.write_bytes("\r\n".join(lines).encode())
    out, err = StringIO(), StringIO()
    call_command("reconcile", str(path), "--psp", "beta", "--json", stdout=out, stderr=err)
    got = json.loads(out.getvalue())
    run = ReconciliationRun.objects.get(psp="beta")
    # the bad row: a row error on its own line (or read as it stands); never another line's error
    assert all(e["line"] == bad + 1 for e in run.row_errors), run.row_errors
    good = [i + 1 for i in records[1:]]  # 1-based line numbers of the two rows after it
    matched = StatementLine.objects.filter(run=run, line_number__in=good, outcome="matched").count()
    assert matched == 2, (got, run.row_errors)


def test_an_alpha_row_with_a_stray_carriage_return_is_a_row_error_not_a_crash(a_day_of_payments, client):
    """A malformed row becomes a row error and the other rows import; a malformed file is refused
    whole with `settlement_file_invalid` (docs/reconciliation.md "Parsing"). Either way the admin
    upload answers with a page, never a server error.

    What was wrong: a lone CR inside one field of an alpha report (a stray carriage return in the
    payout batch of one row) sends the file to alpha's Python parser (the layout declines files
    with CR), whose `csv.reader` over `io.StringIO(text)` (psp_adapters/alpha/settlement.py `read`,
    no `newline=""`) raises `_csv.Error: new-line character seen in unquoted field`. That is no
    `SettlementReportError`, so `reconcile_import` lets it through: the admin upload of the PSP's
    report is a 500 (the command a traceback, the scheduled pull an error every night), and none of
    the file's good rows could be imported. What holds now: a CR inside a line (in a file with LF
    line ends; a file without any LF has CR-only line ends, read as such) is that line's row
    error, listed with its line number; the other three rows match."""
    from django.contrib.auth.models import Permission
    from django.core.files.uploadedfile import SimpleUploadedFile

    from payera.staff.access import ACCESS_ALL_MERCHANTS
    from tests.backoffice.staff import make_staff, otp_force_login

    user = make_staff("fin", role="finance")
    app, codename = ACCESS_ALL_MERCHANTS.split(".")
    user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    otp_force_login(client, user)
    lines = report("alpha").decode().split("\n")
    cols = lines[2].split(",")
    cols[2] = cols[2][:3] + "\r" + cols[2][3:]  # the payout batch of the second record: a stray CR
    lines[2] = ",".join(cols)
    raw = "\n".join(lines).encode()
    response = client.post(
        "/admin/reconciliation/reconciliationrun/upload/",
        {"psp": "alpha", "report": SimpleUploadedFile("alpha.csv", raw)},
    )
    assert response.status_code == 302, response.content[:300]
    run = ReconciliationRun.objects.get(psp="alpha")
    assert run.row_errors and run.row_errors[0]["line"] == 3, run.row_errors
    assert run.summary["matched"] == 3, run.summary
