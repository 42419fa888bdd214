"""An import inside one long statement (its match) is slow, not crashed (PostgreSQL, threads;
real sandbox payments over HTTP and the sandbox's own alpha report; session 15, review 15e).

What was wrong: the heartbeat (`progress_at`) is bumped between steps, never during one. The
match is one transaction (the INSERT ... SELECT of every line, then the index rebuild of a bulk
import) that bumps nothing, and it checked nothing before its commit. When that statement ran
past the busy window (a million-row report, a lock it waited for), the next import's start took
the import for crashed: `_crashed_undo` (another file of the PSP) marked the run failed and
deleted its lines -- none visible yet, the match had not committed -- and the match then
committed them all the same. The import stopped at its next heartbeat (RunTakenOverError), and
its `_run_fail` left the run alone (its attempt was counted up): the lines of a `failed` run
stayed for good, holding their row keys (recon_line_key_once), so every other file with the day's
rows (the portal copy finance uploads) was `settlement_run_busy` ("rows of this file are in the
lines of another import") for ever, and those lines hid the day's items from "missing at PSP".

What holds now: the match's (and the heal's rematch's) transaction is the run's heartbeat: it
locks the run row first (still this import's attempt, else RunTakenOverError and nothing is
written) and bumps `progress_at` again just before its commit. A start that finds the run stale
waits for the lock, then sees the fresh heartbeat: the import is busy, not crashed, and finishes."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import connection, connections
from django.utils import timezone

from ledger.verify import ledger_verify
from reconciliation.errors import SettlementRunBusyError
from reconciliation.models import ReconciliationRun, StatementLine
from reconciliation.selectors import receivable_check
from reconciliation.services import reconcile, reconcile_import
from tests.reconciliation.sandbox_day import report, today

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="two connections at once"),
]


def _empty_next_day(raw: bytes) -> bytes:
    """The PSP's report of the next day with no rows (its header and trailer): another file of
    another period, sharing no row with the day."""
    lines = raw.rstrip(b"\n").split(b"\n")
    day = today().isoformat().encode()
    trailer = lines[-1]
    assert trailer.startswith(b"end_of_report,") and day in trailer, trailer
    return lines[0] + b"\n" + trailer.replace(day, (today() + dt.timedelta(days=1)).isoformat().encode()) + b"\n"


def _empty_same_day(raw: bytes) -> bytes:
    """Another file of the same day with no rows (its header and trailer)."""
    lines = raw.rstrip(b"\n").split(b"\n")
    return lines[0] + b"\n" + lines[-1] + b"\n"


def _lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def _upload_during_a_long_match(monkeypatch, settings, parser: str, other) -> dict[str, object]:
    """The pull's import of the day is held inside its match statement (its lines inserted, not
    committed) past the busy window since its last heartbeat (3 seconds here: as 30 minutes and a
    longer match); then finance uploads `other(the day's report)`. Returns both outcomes (a result
    or the exception). `parser`: the day matched straight from its COPY, or staged (CRLF)."""
    settings.RECONCILIATION_RUN_BUSY_MINUTES = 0.05
    lf = report("alpha")
    day = lf if parser == "postgresql" else lf.replace(b"\n", b"\r\n")
    main = threading.current_thread()
    in_match, release = threading.Event(), threading.Event()
    original = reconcile._tally_rows

    def tally_rows(rows):  # read inside the match's transaction, after its INSERT
        if threading.current_thread() is not main and not in_match.is_set():
            in_match.set()
            release.wait(60)
        return original(rows)

    monkeypatch.setattr(reconcile, "_tally_rows", tally_rows)
    outcome: dict[str, object] = {}

    def run(name: str, raw: bytes, **kwargs) -> None:
        try:
            outcome[name] = reconcile_import(psp="alpha", raw=raw, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcome[name] = exc
        finally:
            connections.close_all()

    pull = threading.Thread(
        target=run, args=("pull", day), kwargs={"file_name": "alpha-pull.csv", "source": "scheduled"}
    )
    pull.start()
    upload = None
    try:
        assert in_match.wait(60), "the pull never reached its match"
        # the statement goes on past the busy window (what the others see of its heartbeat: the
        # last one it committed)
        beat = ReconciliationRun.objects.get(psp="alpha").progress_at
        while timezone.now() - beat <= reconcile.run_busy_for() + dt.timedelta(seconds=0.5):
            time.sleep(0.1)
        upload = threading.Thread(
            target=run, args=("upload", other(lf)), kwargs={"file_name": "alpha-other.csv", "source": "upload"}
        )
        upload.start()
        deadline = time.monotonic() + 30
        while upload.is_alive() and not _lock_waiters() and time.monotonic() < deadline:
            time.sleep(0.05)  # the upload finished (undid the pull) or waits for the match's commit
    finally:
        release.set()
        pull.join(60)
        if upload is not None:
            upload.join(60)
    assert not pull.is_alive() and (upload is None or not upload.is_alive())

    return outcome


@pytest.mark.parametrize("parser", ["postgresql", "python"])
def test_an_import_in_a_long_match_is_not_undone_by_the_next_start(a_day_of_payments, monkeypatch, settings, parser):
    """Finance uploads the next day's report (another file: the start looks for crashed runs of
    the PSP) while the day's import is inside a long match. The day's import is not undone under
    its own feet: it finishes, 100 % matched and settled, and leaves no lines on a failed run."""
    outcome = _upload_during_a_long_match(monkeypatch, settings, parser, _empty_next_day)
    # the bug: the match committed its lines after its run was undone as crashed (failed, for good)
    assert not StatementLine.objects.filter(run__status="failed").exists()
    pulled = outcome["pull"]
    assert not isinstance(pulled, BaseException), pulled
    assert pulled.created and pulled.matched == pulled.rows == 4, pulled
    uploaded = outcome["upload"]
    assert not isinstance(uploaded, BaseException), uploaded
    assert uploaded.created and uploaded.rows == 0
    for run_ in ReconciliationRun.objects.filter(psp="alpha"):
        assert run_.status == "done", (run_.pk, run_.status, run_.summary)
    assert not StatementLine.objects.filter(run__status="failed").exists()
    assert StatementLine.objects.filter(run_id=pulled.run_id).count() == 4
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check
    assert ledger_verify().ok


@pytest.mark.parametrize("parser", ["postgresql", "python"])
def test_another_file_of_the_day_during_a_long_match_is_busy(a_day_of_payments, monkeypatch, settings, parser):
    """Another file of the same day (here one with no rows: it shares none with the pull's file,
    as a PSP's refunds file and its captures file) uploaded while the day's import is inside a
    long match: it waits for the match's commit, and then the import is running, so the file is
    `settlement_run_busy` (two files of one period import one after the other). It was imported
    next to it: the start looked for a running import of the period before it waited for the
    stale-looking run's lock, and did not look again."""
    outcome = _upload_during_a_long_match(monkeypatch, settings, parser, _empty_same_day)
    pulled = outcome["pull"]
    assert not isinstance(pulled, BaseException), pulled
    assert pulled.created and pulled.matched == pulled.rows == 4, pulled
    uploaded = outcome["upload"]
    assert isinstance(uploaded, SettlementRunBusyError), uploaded
    assert "another file of this period" in uploaded.message, uploaded.message
    assert ReconciliationRun.objects.filter(psp="alpha", status="done").count() == 1
    # once the day's import has finished, the file imports
    again = reconcile_import(psp="alpha", raw=_empty_same_day(report("alpha")), file_name="alpha-other.csv")
    assert again.created and again.rows == 0
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check
    assert ledger_verify().ok
