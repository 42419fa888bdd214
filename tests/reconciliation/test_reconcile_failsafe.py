"""An import never posts a wrong journal and never stays stuck: a line whose net is not gross -
fee is a fee difference posted as the money arrived (net); an import that fails after its run was
recorded (here the ledger refuses the posting: a frozen account) marks the run failed, frees its
row keys, and the same file (or a corrected one) imports again. Real sandbox payments, real
PostgreSQL; the failure is the database's own refusal."""

from __future__ import annotations

import pytest

from ledger import selectors as ledger_selectors
from ledger.errors import LedgerError
from ledger.models import AccountStatus, Journal
from ledger.services import account_set_status
from ledger.types import Accounts
from ledger.verify import ledger_verify
from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
from reconciliation.selectors import receivable_check
from reconciliation.services import reconcile_import
from tests.reconciliation.sandbox_day import report

pytestmark = pytest.mark.django_db(transaction=True)

ENDINGS = {"copy": "\n", "python": "\r\n"}  # PostgreSQL parses the first (COPY), alpha's Python parser the CRLF one


def bank_cash() -> int:
    try:
        return ledger_selectors.account_balance(key=Accounts.bank_cash("EUR")).posted
    except Exception:  # noqa: BLE001  (no such account yet: nothing booked)
        return 0


def edited_alpha(ending: str, *, net_delta: int = 0, gross_delta: int = 0) -> tuple[bytes, list[list[str]]]:
    lines = report("alpha").decode().splitlines()
    rows = [line.split(",") for line in lines[1:-1]]
    assert rows[0][0] == "capture" and rows[0][8] == "10000"
    rows[0][10] = str(int(rows[0][10]) + net_delta)
    rows[0][8] = str(int(rows[0][8]) + gross_delta)
    return (ending.join([lines[0], *(",".join(r) for r in rows), lines[-1]]) + ending).encode(), rows


@pytest.mark.parametrize("parser", ["copy", "python"])
def test_a_line_whose_net_is_not_gross_minus_fee_is_a_fee_difference_booked_as_the_money_that_arrived(
    a_day_of_payments, parser
):
    raw, rows = edited_alpha(ENDINGS[parser], net_delta=100_000)
    cash = bank_cash()
    result = reconcile_import(psp="alpha", raw=raw)
    run = ReconciliationRun.objects.get(pk=result.run_id)
    assert run.status == "done" and run.summary["parser"] == ("postgresql" if parser == "copy" else "python")
    assert result.rows == 4 and result.matched == 3
    assert {k: v for k, v in result.discrepancies.items() if v} == {"fee_mismatch": 1}
    [d] = Discrepancy.objects.all()
    gross, fee, net = (int(rows[0][i]) for i in (8, 9, 10))
    # the PSP kept gross - net (here 100,000 less than its agreed fee): the difference shown
    assert (d.kind, d.psp_amount, d.payera_amount) == ("fee_mismatch", 10_000, 10_000)
    assert d.difference == fee - (gross - net) == 100_000
    # bank cash: exactly the nets the report paid; the receivable: the grosses it settled (ties out)
    assert bank_cash() - cash == sum(int(r[10]) for r in rows)
    assert [c["ok"] for c in receivable_check(psp="alpha")] == [True]
    assert ledger_verify().ok


def test_a_changed_gross_with_net_left_as_it_was_is_exactly_an_amount_mismatch(a_day_of_payments):
    raw, _ = edited_alpha("\n", gross_delta=1)
    result = reconcile_import(psp="alpha", raw=raw)
    assert result.rows == 4 and result.matched == 3
    assert {k: v for k, v in result.discrepancies.items() if v} == {"amount_mismatch": 1}
    assert ReconciliationRun.objects.get(pk=result.run_id).status == "done" and ledger_verify().ok


@pytest.fixture
def frozen_receivable(a_day_of_payments):
    key = Accounts.psp_receivable("alpha", "EUR")
    account_set_status(key=key, status=AccountStatus.FROZEN)
    yield key
    account_set_status(key=key, status=AccountStatus.ACTIVE)


@pytest.mark.parametrize("again", ["the same file", "a corrected file"])
def test_an_import_the_ledger_refuses_fails_its_run_and_frees_its_lines(frozen_receivable, again):
    raw, _ = edited_alpha("\n")
    with pytest.raises(LedgerError):
        reconcile_import(psp="alpha", raw=raw)
    [run] = ReconciliationRun.objects.all()
    assert run.status == "failed" and "frozen" in run.summary["error"]
    # nothing of it stays: no lines holding the rows' keys, no discrepancies, no settlement journal
    assert not StatementLine.objects.exists() and not Discrepancy.objects.exists()
    assert not Journal.objects.filter(kind="settlement").exists()
    account_set_status(key=frozen_receivable, status=AccountStatus.ACTIVE)
    # the same file is taken over at once (no 30-minute wait); another file's rows are not duplicates
    retry = raw if again == "the same file" else raw.replace(b"\n", b"\r\n")
    result = reconcile_import(psp="alpha", raw=retry)
    assert (result.created, result.rows, result.matched) == (True, 4, 4)
    assert not any(result.discrepancies.values())
    assert (result.run_id == run.id) is (again == "the same file")
    assert ReconciliationRun.objects.get(pk=result.run_id).status == "done"
    assert Journal.objects.filter(kind="settlement").count() == 1
    assert [c["ok"] for c in receivable_check(psp="alpha")] == [True] and ledger_verify().ok


def edited_beta(edit) -> bytes:
    """The sandbox's beta report with `edit(fields by column, row index)` applied to each row."""
    lines = report("beta").decode().split("\r\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("Batch Number;"))
    header = lines[at].split(";")
    for i in range(at + 1, len(lines)):
        if lines[i]:
            fields = dict(zip(header, lines[i].split(";"), strict=True))
            edit(fields, i - at - 1)
            lines[i] = ";".join(fields[c] for c in header)
    return "\r\n".join(lines).encode()


def test_a_beta_amount_out_of_range_or_in_exponent_notation_is_a_row_error_the_rest_imported(a_day_of_payments):
    def edit(fields, i):
        if i == 0:
            fields["Gross"] = "99999999999999999999.00"  # 10^22 minor units: no bigint holds it
        elif i == 1:
            fields["Commission"] = "1E+2"

    raw = edited_beta(edit)
    result = reconcile_import(psp="beta", raw=raw)
    run = ReconciliationRun.objects.get(pk=result.run_id)
    assert run.status == "done" and result.rows == 1 and run.rows_loaded == 1
    assert result.row_errors == (
        {"line": 6, "message": "Gross is out of range: '99999999999999999999.00'"},
        {"line": 7, "message": "Commission is not an amount: '1E+2'"},
    )
    # the two captures those rows settle are missing at the PSP, the third row (a refund) matched
    assert result.matched == 1 and result.discrepancies["missing_at_psp"] == 2


def test_a_value_the_load_cannot_store_fails_the_run_and_the_corrected_file_imports(a_day_of_payments):
    from reconciliation.errors import SettlementFileInvalidError

    def nul(fields, i):
        if i == 0:
            fields["Merchant Reference"] += "\x00"  # PostgreSQL's text refuses NUL: the COPY fails (DataError)

    with pytest.raises(SettlementFileInvalidError, match="could not be stored"):
        reconcile_import(psp="beta", raw=edited_beta(nul))
    [run] = ReconciliationRun.objects.all()
    assert run.status == "failed" and not StatementLine.objects.exists()
    result = reconcile_import(psp="beta", raw=report("beta"))
    assert (result.rows, result.matched) == (3, 3)


def test_the_scheduled_pull_goes_on_with_the_other_psps_when_one_psps_import_fails(frozen_receivable, caplog):
    from reconciliation.services import reconcile_pull
    from reconciliation.tasks import reconcile_pull_task
    from tests.reconciliation.sandbox_day import today

    # alpha (pulled first) fails in its posting: the ledger refuses its frozen receivable
    assert list(reconcile_pull(day=today())) == ["beta"]
    runs = {r.psp: r for r in ReconciliationRun.objects.all()}
    assert runs["alpha"].status == "failed" and runs["beta"].status == "done"
    assert runs["beta"].summary["matched"] == 3
    assert any("alpha" in r.getMessage() and "not imported" in r.getMessage() for r in caplog.records)
    # once the account is open again the next pull imports alpha (beta's file changes nothing)
    account_set_status(key=frozen_receivable, status=AccountStatus.ACTIVE)
    assert reconcile_pull_task.apply(kwargs={"day": today().isoformat()}).get() == 2
    assert ReconciliationRun.objects.get(psp="alpha").summary["matched"] == 4


def test_the_scheduled_pull_goes_on_when_one_psp_serves_a_report_cut_short(a_day_of_payments, settings):
    """Alpha's report served cut short by a PSP's server (a real HTTP server): refused, beta imported."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from psp_adapters.registry import adapters_reset
    from reconciliation.services import reconcile_pull
    from tests.reconciliation.sandbox_day import today

    cut = report("alpha").rsplit(b"\n", 2)[0]  # no trailer, as a download cut short

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(cut)))
            self.end_headers()
            self.wfile.write(cut)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        connectors = {k: {**v, "OPTIONS": dict(v["OPTIONS"])} for k, v in settings.PSP_CONNECTORS.items()}
        connectors["alpha"]["OPTIONS"]["base_url"] = f"http://127.0.0.1:{server.server_port}"
        settings.PSP_CONNECTORS = connectors
        adapters_reset()
        assert list(reconcile_pull(day=today())) == ["beta"]
    finally:
        server.shutdown()
        server.server_close()
        adapters_reset()
    assert ReconciliationRun.objects.get(psp="beta").status == "done"
    # alpha's refused file imported nothing; its day is kept due by a failed run of the pull
    # (test_reconcile_pull_refused_file.py): no lines, the failure counted
    refused = ReconciliationRun.objects.get(psp="alpha")
    assert (refused.status, refused.period_start, refused.summary["pull_failures"]) == ("failed", today(), 1)
    assert not refused.lines.exists()


def test_a_report_sent_again_with_other_line_ends_opens_no_discrepancy_but_a_row_paid_twice_does(a_day_of_payments):
    raw = report("alpha")
    assert reconcile_import(psp="alpha", raw=raw).matched == 4
    again = reconcile_import(psp="alpha", raw=raw.replace(b"\n", b"\r\n"))  # the same report, CRLF: another file
    assert again.created and (again.rows, again.matched, again.discrepancies["duplicate"]) == (4, 4, 0)
    assert not Discrepancy.objects.exists()  # nothing for finance: no money moved twice
    # a row of the report in another payout batch (the PSP paid it twice), and one with another
    # amount in the same batch: duplicates that are discrepancies
    lines = raw.decode().splitlines()
    other_batch = lines[1].replace("PB-", "PB-LATE-")
    cols = lines[2].split(",")
    cols[8], cols[10] = str(int(cols[8]) + 1), str(int(cols[10]) + 1)
    edited = "\n".join([lines[0], other_batch, ",".join(cols), lines[-1], ""])
    third = reconcile_import(psp="alpha", raw=edited.encode())
    assert (third.rows, third.discrepancies["duplicate"]) == (2, 2)
    assert sorted(Discrepancy.objects.values_list("kind", "reference")) == sorted(
        [("duplicate", lines[1].split(",")[4]), ("duplicate", cols[4])]
    )
    assert ledger_verify().ok and [c["ok"] for c in receivable_check(psp="alpha")] == [True]
