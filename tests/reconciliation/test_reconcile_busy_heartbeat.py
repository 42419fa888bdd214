"""Busy means "still progressing", not "started less than 30 minutes ago" (threads, PostgreSQL;
real sandbox payments over HTTP and the sandbox's own alpha report; session 15).

What was wrong: `_run_start` (reconciliation/services/reconcile.py) counted an import's 30 minutes
(`RUN_BUSY_FOR`) from the run's *start* (`created_at`). An import that runs longer (a
1,000,000-row report, a slow heal) was still working after 30 minutes, yet the same file again, or
another file of the same period, took its run over (deleted its lines, loaded them again) or
imported next to it: the two raced on one day (duplicate lines, `duplicate` discrepancies for a
clean day, the run's summary overwritten). What holds now: a run is busy while its heartbeat
(`progress_at`, bumped with every chunk loaded, phase begun and heal inquiry, in that progress's
own short transaction) is younger than RECONCILIATION_RUN_BUSY_MINUTES (30), however long ago it
started; a run that stopped progressing (a crashed worker) is still taken over; and an import
whose run was taken over after all (paused past the window) stops at its next progress instead of
writing over the import that took it over."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from ledger.verify import ledger_verify
from reconciliation.errors import SettlementRunBusyError
from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
from reconciliation.selectors import receivable_check
from reconciliation.services import reconcile, reconcile_import
from tests.reconciliation.held_import import import_killed_while_loading, start_thread
from tests.reconciliation.sandbox_day import report

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="two connections at once"),
]


def _files() -> tuple[bytes, bytes]:
    """The day's report as the Python parser loads it (CRLF: chunks, a progress call each) and the
    same day as other bytes (LF: another file of the same period)."""
    lf = report("alpha")
    crlf = lf.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert lf != crlf
    return crlf, lf


class _Held:
    """An import in a thread that stops in its progress callback at each phase in `at` until
    released (as the command's progress bar is called: after the progress is committed)."""

    def __init__(self, raw: bytes, at: tuple[str, ...]) -> None:
        self.reached = {phase: threading.Event() for phase in at}
        self.go = {phase: threading.Event() for phase in at}
        self.errors: list[BaseException] = []
        self.thread = start_thread(
            lambda: reconcile_import(psp="alpha", raw=raw, file_name="alpha-big.csv", progress=self._progress),
            self.errors,
        )

    def _progress(self, phase: str, done: int, total: int) -> None:
        if phase in self.reached and not self.reached[phase].is_set():
            self.reached[phase].set()
            self.go[phase].wait(60)

    def wait(self, phase: str) -> None:
        assert self.reached[phase].wait(60), f"the import never reached {phase}"

    def release(self, phase: str) -> None:
        self.go[phase].set()

    def finish(self) -> None:
        for event in self.go.values():
            event.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


def _ago(minutes: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(minutes=minutes)


def _day_settled_once(run_id: str) -> None:
    run = ReconciliationRun.objects.get(pk=run_id)
    assert run.status == "done" and run.summary["matched"] == run.summary["rows"] == 4, run.summary
    assert StatementLine.objects.filter(run_id=run_id).count() == 4
    assert not StatementLine.objects.filter(duplicate=True).exists()
    assert not Discrepancy.objects.exists()
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check
    assert ledger_verify().ok


def test_an_import_started_40_minutes_ago_that_still_progresses_is_busy(a_day_of_payments):
    """A long import: started 40 minutes ago, still working (it just began matching, which bumped
    its heartbeat). The same file again and another file of the day are both busy; the import
    then ends 100 % matched, once."""
    crlf, lf = _files()
    first = _Held(crlf, at=("loading", "matching"))
    try:
        first.wait("loading")  # its first chunk is loaded: the run is 40 minutes old by now
        run = ReconciliationRun.objects.get(psp="alpha")
        ReconciliationRun.objects.filter(pk=run.pk).update(created_at=_ago(40), progress_at=_ago(40))
        first.release("loading")
        first.wait("matching")  # it progressed: the phase it began is its heartbeat
        run.refresh_from_db()
        assert run.status == "matching" and timezone.now() - run.created_at > dt.timedelta(minutes=39)
        assert timezone.now() - run.progress_at < dt.timedelta(minutes=1), run.progress_at
        with pytest.raises(SettlementRunBusyError, match="importing this file"):
            reconcile_import(psp="alpha", raw=crlf)
        with pytest.raises(SettlementRunBusyError, match="another file of this period"):
            reconcile_import(psp="alpha", raw=lf)
        # the heartbeat as the brief puts it: progressed 1 minute ago
        ReconciliationRun.objects.filter(pk=run.pk).update(progress_at=_ago(1))
        with pytest.raises(SettlementRunBusyError):
            reconcile_import(psp="alpha", raw=crlf)
        with pytest.raises(SettlementRunBusyError):
            reconcile_import(psp="alpha", raw=lf)
    finally:
        first.finish()
    assert not first.errors, first.errors
    assert ReconciliationRun.objects.filter(psp="alpha").count() == 1
    _day_settled_once(run.pk)


def test_a_run_that_stopped_progressing_40_minutes_ago_is_taken_over(a_day_of_payments, monkeypatch):
    """A crashed import (killed while loading: nothing marked it failed): busy while its last
    progress is a minute old, however old its start; taken over by the same file once it has not
    progressed for 40 minutes, and imported from scratch."""
    crlf, _ = _files()
    run = import_killed_while_loading(monkeypatch, crlf)

    ReconciliationRun.objects.filter(pk=run.pk).update(created_at=_ago(40), progress_at=_ago(1))
    with pytest.raises(SettlementRunBusyError):
        reconcile_import(psp="alpha", raw=crlf)

    ReconciliationRun.objects.filter(pk=run.pk).update(created_at=_ago(40), progress_at=_ago(40))
    result = reconcile_import(psp="alpha", raw=crlf)
    assert result.created and result.run_id == run.pk and result.matched == result.rows == 4
    run.refresh_from_db()
    assert timezone.now() - run.created_at < dt.timedelta(minutes=1)
    assert timezone.now() - run.progress_at < dt.timedelta(minutes=1)
    _day_settled_once(run.pk)


def test_an_import_taken_over_after_a_pause_stops_at_its_next_progress(a_day_of_payments, settings):
    """An import that did stall past the window (here: paused in its progress callback, the run
    backdated) is taken over by the same file, which imports the day. When the stalled import
    wakes up, its next progress finds the run taken over: it stops, leaving the other import's
    lines, summary and status as they are (it neither loads its rows again as duplicates of
    them nor, failing, removes them)."""
    crlf, _ = _files()
    first = _Held(crlf, at=("loading",))
    try:
        first.wait("loading")
        run = ReconciliationRun.objects.get(psp="alpha")
        ReconciliationRun.objects.filter(pk=run.pk).update(created_at=_ago(40), progress_at=_ago(40))
        taken = reconcile_import(psp="alpha", raw=crlf)
        assert taken.created and taken.run_id == run.pk and taken.matched == taken.rows == 4
    finally:
        first.finish()
    assert len(first.errors) == 1 and isinstance(first.errors[0], reconcile.RunTakenOverError), first.errors
    assert ReconciliationRun.objects.filter(psp="alpha").count() == 1
    _day_settled_once(run.pk)
