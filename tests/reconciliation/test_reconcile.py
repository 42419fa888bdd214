"""Reconciliation of PSP settlement reports, end to end: real payments through the sandbox PSPs
(real HTTP), the sandboxes' own daily reports fetched over HTTP, imported and matched on
PostgreSQL (COPY), the settlement posted to the ledger, discrepancies for what does not match."""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ledger.verify import ledger_verify
from payments.models import AttemptStatus, Capture, PaymentAttempt
from payments.services import payment_create
from psp_adapters.registry import get_adapter
from reconciliation.errors import SettlementFileInvalidError
from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
from reconciliation.selectors import receivable_check
from reconciliation.services import reconcile_import
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.sandbox_day import CARD, pay, report, run_json

pytestmark = pytest.mark.django_db(transaction=True)

ZERO = {
    "missing_in_payera": 0,
    "missing_at_psp": 0,
    "amount_mismatch": 0,
    "currency_mismatch": 0,
    "duplicate": 0,
    "fee_mismatch": 0,
}


def test_a_sandbox_day_reconciles_100_percent_and_the_receivable_ties_out(a_day_of_payments, tmp_path):
    for psp, rows in (("alpha", 4), ("beta", 3)):
        path = tmp_path / f"{psp}.csv"
        path.write_bytes(report(psp))
        assert run_json(path, psp) == {"rows": rows, "matched": rows, "discrepancies": ZERO}
        [check] = receivable_check(psp=psp)
        assert check == {"currency": "EUR", "ledger": 0, "unsettled": 0, "ok": True}
    run = ReconciliationRun.objects.get(psp="alpha")
    assert run.summary["receivable"][0]["ok"] and run.progress_percent == 100
    assert not Discrepancy.objects.exists()
    assert ledger_verify().ok


def test_removed_changed_duplicated_and_unknown_rows_are_exactly_four_discrepancies(a_day_of_payments, tmp_path):
    lines = report("alpha").decode().splitlines()
    header, body, end = lines[0], lines[1:-1], lines[-1]
    assert len(body) == 4
    assert ",2500," in body[1]  # left out below: the 2,500 capture goes missing at the PSP
    cols = body[2].split(",")
    cols[8] = str(int(cols[8]) + 1)  # the 730 capture, one cent more
    changed = ",".join(cols)
    unknown = body[3].replace("att_", "att_unknown", 1).replace(body[3].split(",")[3], "auth_UNKNOWN")
    edited = [header, body[0], changed, body[3], body[0], unknown.replace("refund", "capture", 1), end]
    path = tmp_path / "alpha-edited.csv"
    path.write_text("\n".join(edited) + "\n")
    got = run_json(path, "alpha")
    assert got["rows"] == 5 and got["matched"] == 2
    assert got["discrepancies"] == {
        **ZERO,
        "missing_at_psp": 1,
        "amount_mismatch": 1,
        "duplicate": 1,
        "missing_in_payera": 1,
    }
    kinds = dict(Discrepancy.objects.values_list("kind", "difference"))
    assert kinds["amount_mismatch"] == 1 and kinds["missing_at_psp"] == -2_500
    missing = Discrepancy.objects.get(kind="missing_at_psp")
    assert Capture.objects.get(pk=missing.object_id).amount == 2_500 and missing.status == "open"
    # the receivable still holds exactly what was captured and not settled: 2,500 and 730
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 2_500 + 730


def test_a_day_reconciled_then_its_fuller_report_with_four_faults_gives_exactly_those_four(a_day_of_payments, tmp_path):
    """A PSP's report for today holds every payment of the day so far. Reconciled at noon, then
    again in the evening with more payments, the evening file's rows the noon file had are that
    report sent again (counted as matched then); only the four faults in the new rows show."""
    alpha, _ = a_day_of_payments
    noon = tmp_path / "alpha-noon.csv"
    noon.write_bytes(report("alpha"))
    assert run_json(noon, "alpha") == {"rows": 4, "matched": 4, "discrepancies": ZERO}
    pay(alpha, [1_100, 2_200, 3_300, 4_400])
    lines = report("alpha").decode().splitlines()
    header, body, end = lines[0], lines[1:-1], lines[-1]
    old_refs = {line.split(",")[4] for line in noon.read_text().splitlines()[1:-1]}
    old = [b for b in body if b.split(",")[4] in old_refs]
    new = [b for b in body if b.split(",")[4] not in old_refs]
    assert len(old) == 4 and len(new) == 4
    gone, changed, twice, as_is = sorted(new, key=lambda b: int(b.split(",")[8]))
    cols = changed.split(",")
    cols[8] = str(int(cols[8]) + 5)
    unknown = twice.split(",")
    unknown[3], unknown[4], unknown[5] = "auth_UNKNOWN", "att_unknown", "op_UNKNOWN"  # a payment Payera never saw
    unknown = ",".join(unknown)
    evening = tmp_path / "alpha-evening.csv"
    evening.write_text("\n".join([header, *old, ",".join(cols), twice, as_is, twice, unknown, end]) + "\n")
    got = run_json(evening, "alpha")
    assert got == {
        "rows": 9,
        "matched": 4 + 2,  # the noon report's rows sent again, and two of the new ones
        "discrepancies": {**ZERO, "missing_at_psp": 1, "amount_mismatch": 1, "duplicate": 1, "missing_in_payera": 1},
    }
    assert sorted(Discrepancy.objects.values_list("kind", flat=True)) == [
        "amount_mismatch", "duplicate", "missing_at_psp", "missing_in_payera"
    ]  # fmt: skip
    missing = Discrepancy.objects.get(kind="missing_at_psp")
    assert Capture.objects.get(pk=missing.object_id).amount == int(gone.split(",")[8])
    [check] = receivable_check(psp="alpha")
    assert check["ok"]
    assert ledger_verify().ok


def test_a_lost_psp_webhook_is_healed_by_reconciliation(day):
    merchant = MerchantFactory(connectors=["beta"])
    lost = payment_create(merchant=merchant, amount=5_000, currency="EUR", payment_method_data=CARD)
    attempt = PaymentAttempt.objects.get(payment_id=lost.id)
    assert attempt.status == AttemptStatus.PENDING  # beta's webhook went elsewhere: never processed
    rows = []
    deadline = time.monotonic() + 10
    while not rows:  # the sandbox completes the payment asynchronously
        raw = report("beta")
        rows = get_adapter("beta").read_settlement_report(raw).rows
        assert time.monotonic() < deadline
        time.sleep(0.1)
    result = reconcile_import(psp="beta", raw=raw)
    assert result.as_contract() == {"rows": 1, "matched": 1, "discrepancies": ZERO}
    assert result.healed == 1 and StatementLine.objects.get().healed
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.CAPTURED
    assert receivable_check(psp="beta")[0]["ok"]


def test_the_same_file_twice_is_imported_once(a_day_of_payments, tmp_path):
    path = tmp_path / "alpha.csv"
    path.write_bytes(report("alpha"))
    first = run_json(path, "alpha")
    journals = ledger_verify()
    assert run_json(path, "alpha") == first
    assert ReconciliationRun.objects.count() == 1 and StatementLine.objects.count() == 4
    assert ledger_verify() == journals
    # the same rows in another file (a re-sent report) are stored as duplicates, never settled twice,
    # and counted as the first report's lines were: the report reads as it did the first time
    path2 = tmp_path / "alpha-again.csv"
    path2.write_bytes(report("alpha") + b"\n")
    again = run_json(path2, "alpha")
    assert again == first
    second = ReconciliationRun.objects.exclude(pk=ReconciliationRun.objects.order_by("created_at").first().pk).get()
    assert second.summary["sent_again"] == 4
    from reconciliation.admin_reports import _sums_by_currency, run_report_html

    page = run_report_html(second)
    assert "Match rate 100.0%" in page and "sent again (an earlier report had them) 4" in page
    sums = _sums_by_currency(second)
    assert not sums.get("duplicate") and sums["matched"] == _sums_by_currency(ReconciliationRun.objects.get(
        pk=ReconciliationRun.objects.order_by("created_at").first().pk))["matched"]  # fmt: skip
    assert StatementLine.objects.filter(run=second, outcome="duplicate", duplicate=True).count() == 4
    assert ledger_verify() == journals and not Discrepancy.objects.exists()
    assert receivable_check(psp="alpha")[0]["ok"]


def test_a_malformed_row_is_reported_by_line_and_the_rest_imports(a_day_of_payments, tmp_path):
    lines = report("alpha").decode().splitlines()
    cols = lines[2].split(",")
    cols[8] = "12,5x"
    lines[2] = ",".join(cols)
    path = tmp_path / "alpha.csv"
    path.write_text("\n".join(lines) + "\n")
    err = StringIO()
    out = StringIO()
    call_command("reconcile", str(path), "--psp", "alpha", "--json", stdout=out, stderr=err)
    got = json.loads(out.getvalue())
    assert got["rows"] == 3 and got["matched"] == 3
    assert err.getvalue().startswith("line 3: ")
    run = ReconciliationRun.objects.get()
    assert run.row_error_count == 1 and run.row_errors[0]["line"] == 3


@pytest.mark.parametrize("amount", ["4111 1111 1111 1111", "4111-1111-1111-1111x"])
def test_a_row_error_quoting_a_card_number_masks_it(a_day_of_payments, tmp_path, amount):
    """A report cell holding a card number (a shifted column) is quoted masked in the row error
    that the run keeps (the back office shows it) and that the command prints."""
    from tests.backoffice.leaks import leaks

    lines = report("alpha").decode().splitlines()
    cols = lines[2].split(",")
    cols[8] = amount
    lines[2] = ",".join(cols)
    path = tmp_path / "alpha.csv"
    path.write_text("\n".join(lines) + "\n")
    err = StringIO()
    call_command("reconcile", str(path), "--psp", "alpha", "--json", stdout=StringIO(), stderr=err)
    run = ReconciliationRun.objects.get()
    assert run.row_error_count == 1 and "411111******1111" in run.row_errors[0]["message"]
    assert leaks(json.dumps(run.row_errors)) == [] and leaks(err.getvalue()) == []


@pytest.mark.parametrize("mangle", ["columns", "encoding", "other_psp"])
def test_a_malformed_file_is_refused_whole(a_day_of_payments, tmp_path, mangle):
    raw = report("alpha")
    if mangle == "columns":
        raw = raw.replace(b"gross_minor", b"gross", 1)
    elif mangle == "encoding":
        raw = raw.replace(b"capture", "capturé".encode("latin-1"), 1)
    else:
        raw = report("beta")
    with pytest.raises(SettlementFileInvalidError):
        reconcile_import(psp="alpha", raw=raw)
    path = tmp_path / "bad.csv"
    path.write_bytes(raw)
    with pytest.raises(CommandError, match="refused"):
        call_command("reconcile", str(path), "--psp", "alpha", "--json", stdout=StringIO(), stderr=StringIO())
    assert not ReconciliationRun.objects.exists() and not StatementLine.objects.exists()


def test_readable_summary_and_progress_without_json(a_day_of_payments, tmp_path):
    path = tmp_path / "beta.csv"
    path.write_bytes(report("beta"))
    out, err = StringIO(), StringIO()
    call_command("reconcile", str(path), "--psp", "beta", stdout=out, stderr=err)
    assert "matched 3 (100.0 %)" in out.getvalue() and "ties out" in out.getvalue()
    assert "100%" in err.getvalue() and "loading" in err.getvalue()


def test_the_scheduled_pull_fetches_every_psps_report_and_imports_it_once(a_day_of_payments, settings):
    from reconciliation.tasks import reconcile_pull_task
    from tests.reconciliation.sandbox_day import today

    assert settings.CELERY_BEAT_SCHEDULE["reconciliation-report-pull"]["task"] == reconcile_pull_task.name
    for _ in range(2):
        assert reconcile_pull_task.apply(kwargs={"day": today().isoformat()}).get() == 2
    runs = ReconciliationRun.objects.order_by("psp")
    got = [(r.psp, r.source, r.summary["matched"]) for r in runs]
    assert got == [("alpha", "scheduled", 4), ("beta", "scheduled", 3)]
    assert all(c["ok"] for psp in ("alpha", "beta") for c in receivable_check(psp=psp))


def test_a_fee_difference_and_a_currency_mismatch(a_day_of_payments, tmp_path):
    lines = report("alpha").decode().splitlines()
    fee = lines[1].split(",")
    fee[9], fee[10] = str(int(fee[9]) + 7), str(int(fee[10]) - 7)  # the PSP kept 7 cents more than agreed
    cur = lines[2].split(",")
    cur[7] = "USD"
    path = tmp_path / "alpha.csv"
    path.write_text("\n".join([lines[0], ",".join(fee), ",".join(cur), *lines[3:]]) + "\n")
    got = run_json(path, "alpha")
    assert got == {"rows": 4, "matched": 2, "discrepancies": {**ZERO, "fee_mismatch": 1, "currency_mismatch": 1}}
    assert Discrepancy.objects.get(kind="fee_mismatch").difference == -7
    # the fee difference settled (the money arrived, less 7): only the currency mismatch stays unsettled
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 2_500


def test_the_receivable_check_is_a_running_total_of_finished_runs(a_day_of_payments, tmp_path):
    """The settled side of the check comes from each finished run's `summary["settled"]` (no
    anti-join over every capture); a run finished before runs kept it is summed from its lines."""
    path = tmp_path / "alpha.csv"
    path.write_bytes(report("alpha"))
    run_json(path, "alpha")
    run = ReconciliationRun.objects.get()
    assert run.summary["settled"] == {"EUR": sum(StatementLine.objects.values_list("gross", flat=True))}
    [check] = receivable_check(psp="alpha")
    assert check == {"currency": "EUR", "ledger": 0, "unsettled": 0, "ok": True}
    # the running total is what the check reads: a wrong one shows
    ReconciliationRun.objects.filter(pk=run.pk).update(summary={**run.summary, "settled": {"EUR": 1}})
    assert not receivable_check(psp="alpha")[0]["ok"]
    # a legacy run without it: its posted lines are summed once
    legacy = {k: v for k, v in run.summary.items() if k != "settled"}
    ReconciliationRun.objects.filter(pk=run.pk).update(summary=legacy)
    assert receivable_check(psp="alpha")[0]["ok"]


def test_a_later_report_that_settles_a_missing_item_resolves_its_discrepancy(a_day_of_payments, tmp_path):
    from payera.audit.models import AuditLogEntry

    lines = report("alpha").decode().splitlines()
    header, body, end = lines[0], lines[1:-1], lines[-1]
    assert ",2500," in body[1]
    first = tmp_path / "alpha-short.csv"
    first.write_text("\n".join([header, body[0], *body[2:], end]) + "\n")  # the 2,500 capture left out
    assert run_json(first, "alpha")["discrepancies"] == {**ZERO, "missing_at_psp": 1}
    missing = Discrepancy.objects.get(kind="missing_at_psp")
    assert missing.status == "open"
    # the PSP's next report settles it (the rows settled before are sent again: matched as before,
    # never settled twice)
    later = tmp_path / "alpha-later.csv"
    later.write_text("\n".join([header, *body, end]) + "\n")
    got = run_json(later, "alpha")
    assert got == {"rows": 4, "matched": 4, "discrepancies": ZERO}
    assert StatementLine.objects.filter(outcome="duplicate").count() == 3
    run = ReconciliationRun.objects.order_by("-created_at").first()
    assert run.file_name.endswith("alpha-later.csv")
    missing.refresh_from_db()
    line = StatementLine.objects.get(run=run, object_id=missing.object_id)
    assert missing.status == "resolved" and missing.resolved_by == f"reconciliation:{run.id}"
    assert f"run {run.id} line {line.line_number}" in missing.reason and missing.closed_at is not None
    assert missing.adjustment_reference == ""  # the settlement journal moved the money
    assert run.summary["resolved_missing_at_psp"] == 1
    history = AuditLogEntry.objects.get_for_object(missing).order_by("timestamp")
    assert [e.changes_dict.get("status", [None, None])[1] for e in history][-1] == "resolved"
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0
    # the later report's rows settled before are the same lines sent again (same payout batch and
    # amounts): duplicates that open no discrepancy
    assert not Discrepancy.objects.filter(status="open").exists()


def test_missing_at_psp_reads_the_periods_captures_and_refunds_through_their_success_time_index(day):
    """The report's period bounds the search (an index on the time a capture or refund succeeded),
    not every capture ever at the PSP: the plan can read the period's range alone."""
    import datetime as dt

    from django.db import connection

    from reconciliation.services.reconcile import _discrepancies_sql

    run = ReconciliationRun.objects.create(psp="alpha", file_sha256="x" * 64, period_start=dt.date(2026, 11, 23),
                                           period_end=dt.date(2026, 11, 23))  # fmt: skip
    statements = [s for s in _discrepancies_sql(run, unmatched=False) if "missing_at_psp" in s[0]]
    # captures, refunds, won disputes (their reversals: a scan of the disputes, a few per thousand
    # payments), returned refunds (their reversals by the time they were returned, and their
    # refund halves by the time they succeeded, as any refund)
    assert len(statements) == 5
    plans = []
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # what an index can bound shows in the plan
        try:
            for sql, params in statements:
                cursor.execute("EXPLAIN " + sql, params)
                plans.append("\n".join(r[0] for r in cursor.fetchall()))
        finally:
            cursor.execute("RESET enable_seqscan")
    assert "capture_succeeded_at_idx" in plans[0] and "refund_succeeded_time_idx" in plans[1]
    assert "refund_reversed_at_idx" in plans[3] and "refund_succeeded_time_idx" in plans[4]
