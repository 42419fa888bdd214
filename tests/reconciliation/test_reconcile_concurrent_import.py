"""The same report imported twice at once (threads, PostgreSQL; real sandbox payments over HTTP
and the sandbox's own alpha report), and an import that crashed (review 14a)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from ledger.verify import ledger_verify
from reconciliation.errors import SettlementRunBusyError
from reconciliation.models import Discrepancy, ReconciliationRun
from reconciliation.selectors import receivable_check
from reconciliation.services import reconcile_import
from tests.reconciliation.held_import import import_killed_while_loading, start_thread
from tests.reconciliation.sandbox_day import report

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two connections at once")
def test_the_same_file_imported_while_its_first_import_is_still_loading_is_busy(a_day_of_payments):
    """docs/reconciliation.md "Import once": an import that *crashed* in `loading`/`matching` is
    taken over by the next import of the same file, but "a run still busy, younger than 30
    minutes, answers `settlement_run_busy`, 409" (decisions/reconciliation-import-failure.md: a
    run left in `loading`/`matching` gets "the existing 30-minute takeover").

    What was wrong: `_run_start` (reconciliation/services/reconcile.py) exempts a run in `loading`
    from the 30-minute rule (`run.status not in (LOADING, FAILED)`), so while the first import of
    a file is still loading (here: paused in its progress callback, as the command's progress bar
    is called; in real life a large file, or the admin upload and the command or the 02:30 pull
    importing the same bytes), a second import of the same file takes the live run over and
    imports it to the end. The first then carries on under the same run id: every one of its rows
    now finds the second's lines, so it stores them again as duplicate lines of the same run,
    opens a `duplicate` discrepancy for each (the "sent again" rule needs another run) and
    overwrites the run's summary (0 matched, `settled` {}): a clean day reported to finance as all
    duplicates, each one inviting "settle as reported" into suspense for money already settled,
    and the receivable check, a running total of the finished runs' `summary["settled"]`, loses
    the day's settled gross for good (seen: ledger 0, unsettled 12230, "DOES NOT TIE OUT") although
    the settlement journal was posted once and the ledger is right. What holds now: the
    second import is refused as busy while the first is loading (a run in any phase of its import
    younger than 30 minutes is busy), and the run ends 100 % matched with no discrepancy."""
    raw = report("alpha").replace(b"\n", b"\r\n")  # CRLF: the Python parser, which loads in chunks
    loading, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "loading" and not loading.is_set():
            loading.set()  # the run is recorded (committed) and loading
            release.wait(timeout=60)

    first = start_thread(lambda: reconcile_import(psp="alpha", raw=raw, progress=progress), errors)
    try:
        assert loading.wait(timeout=30), "the first import never reached its load"
        with pytest.raises(SettlementRunBusyError):
            reconcile_import(psp="alpha", raw=raw)
    finally:
        release.set()
        first.join(timeout=60)
    assert not first.is_alive() and not errors, errors
    run = ReconciliationRun.objects.get(psp="alpha")
    assert run.summary["matched"] == run.summary["rows"] == 4, run.summary
    assert not Discrepancy.objects.exists()
    assert receivable_check(psp="alpha")[0]["ok"]
    assert ledger_verify().ok


def test_an_import_that_crashed_while_loading_is_taken_over_only_once_it_is_stale(a_day_of_payments, monkeypatch):
    """A run left in `loading` by an import that died (the process killed: nothing marked it
    failed) is not taken over while it progressed within the last 30 minutes (it cannot be told
    from a running import); once it has not progressed for longer, the same file takes it over and
    imports it from scratch."""
    raw = report("alpha").replace(b"\n", b"\r\n")
    run = import_killed_while_loading(monkeypatch, raw)

    with pytest.raises(SettlementRunBusyError):
        reconcile_import(psp="alpha", raw=raw)
    stale = timezone.now() - dt.timedelta(minutes=31)  # started and last progressed 31 minutes ago
    ReconciliationRun.objects.filter(pk=run.pk).update(created_at=stale, progress_at=stale)
    result = reconcile_import(psp="alpha", raw=raw)
    assert result.created and result.run_id == run.id and result.matched == result.rows == 4
    run.refresh_from_db()
    assert run.status == "done" and timezone.now() - run.created_at < dt.timedelta(minutes=1)
    assert not Discrepancy.objects.exists()
    assert receivable_check(psp="alpha")[0]["ok"]
    assert ledger_verify().ok
    ReconciliationRun.objects.filter(pk=run.pk).update(status="loading")
    with pytest.raises(SettlementRunBusyError):  # the taken-over run's heartbeat counts from its new start
        reconcile_import(psp="alpha", raw=raw)
