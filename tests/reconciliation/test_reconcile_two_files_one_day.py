"""Two different files of the same PSP day imported at once (threads, PostgreSQL; real sandbox
payments over HTTP and the sandbox's own alpha report), the first one failing or finishing
(review 14e)."""

from __future__ import annotations

import pytest
from django.db import connection

from ledger.verify import ledger_verify
from reconciliation.errors import SettlementRunBusyError
from reconciliation.models import Discrepancy, ReconciliationRun
from reconciliation.selectors import receivable_check
from reconciliation.services import reconcile_import
from tests.reconciliation.held_import import import_held_at_finish
from tests.reconciliation.sandbox_day import report

pytestmark = pytest.mark.django_db(transaction=True)


def _files() -> tuple[bytes, bytes]:
    lf = report("alpha")
    crlf = lf.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert lf != crlf  # the same rows, other bytes (another SHA-256)
    return lf, crlf


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two connections at once")
def test_another_file_of_a_day_whose_import_is_running_is_busy_and_settles_after_it_failed(
    a_day_of_payments, monkeypatch
):
    """docs/reconciliation.md: a failed import leaves nothing behind (its lines removed, its row
    keys free again), and a day no finished run covers is pulled again.

    What was wrong: the busy rule of `_run_start` only kept the *same* file (same SHA-256) out.
    The same day's report arriving as two files (the 02:30 pull, LF; the portal copy finance
    uploads, CRLF) while the first import was still running (its lines matched and committed): the
    second read every row as the first run's lines "sent again", posted nothing, opened no
    discrepancy and finished `done`. The first then failed and `_run_fail` deleted its lines: the
    day covered by a finished run (never pulled again) whose lines were "sent again" of lines that
    no longer existed; the day's money stayed on the PSP receivable and nothing was open.

    What holds now: while an import of another file of the PSP with an overlapping period is
    running, the second import is `settlement_run_busy` (nothing recorded); once the first has
    failed, the second file imports and settles the day (all matched, the receivable ties out)."""
    lf, crlf = _files()
    thread, release, errors = import_held_at_finish(
        monkeypatch, lf, fail="the first import fails after matching (a lost connection, a crash)",
        file_name="alpha-pull.csv", source="scheduled",
    )
    try:
        with pytest.raises(SettlementRunBusyError):
            reconcile_import(psp="alpha", raw=crlf, file_name="alpha-portal.csv", source="upload")
        assert ReconciliationRun.objects.filter(psp="alpha").count() == 1  # the busy one recorded nothing
    finally:
        release.set()
        thread.join(60)
    assert not thread.is_alive()
    assert errors and "fails after matching" in str(errors[0]), errors
    assert ReconciliationRun.objects.get(psp="alpha").status == "failed"

    second = reconcile_import(psp="alpha", raw=crlf, file_name="alpha-portal.csv", source="upload")
    runs = dict(ReconciliationRun.objects.filter(psp="alpha").values_list("id", "status"))
    assert runs.get(second.run_id) == "done", runs
    assert second.created and second.matched == second.rows == 4, second
    assert not Discrepancy.objects.filter(psp="alpha", status="open").exists()
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check
    assert ledger_verify().ok


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two connections at once")
def test_another_file_of_a_day_whose_import_then_finishes_is_that_report_sent_again(a_day_of_payments, monkeypatch):
    """The same two files, the first import finishing: the second, busy while it ran, imports
    afterwards as the report sent again (all its rows counted as the first's matched lines, no
    discrepancy, nothing settled twice)."""
    lf, crlf = _files()
    thread, release, errors = import_held_at_finish(monkeypatch, lf, file_name="alpha-pull.csv", source="scheduled")
    try:
        with pytest.raises(SettlementRunBusyError):
            reconcile_import(psp="alpha", raw=crlf, file_name="alpha-portal.csv", source="upload")
    finally:
        release.set()
        thread.join(60)
    assert not thread.is_alive() and not errors, errors

    second = reconcile_import(psp="alpha", raw=crlf, file_name="alpha-portal.csv", source="upload")
    assert second.created and second.matched == second.rows == 4, second
    assert ReconciliationRun.objects.get(pk=second.run_id).summary["sent_again"] == 4
    assert not Discrepancy.objects.filter(psp="alpha").exists()
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check
    assert ledger_verify().ok
