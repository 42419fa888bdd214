"""Only a finished run's lines count as already imported (PostgreSQL, threads; real sandbox
payments over HTTP and the sandbox's own alpha report; session 15).

What was wrong: the "seen before" lookups of the match (`_stage_done`'s UPDATE of the staged keys,
`_seen_create` for a clean file) and the "sent again" rule (`SENT_AGAIN`: no discrepancy, counted
as the earlier line) read the lines of *any* run. The busy rule keeps another file of the same
period out only while an import runs; the lines of a run that is not done but no longer busy (a
failed import whose undo failed too, a crashed worker) or of a running import of another period
were read as imported. A file with those rows then read them as the report sent again: `done`
with nothing settled and no discrepancy, while those lines were never final (an undo or the
takeover removes them): the day's money stayed on the PSP receivable and nothing was open.

What holds now: a line counts as imported only when its run is `done` (`FINAL`, in the matching
SQL of both paths, COPY and staged/SQLite, and in `SENT_AGAIN`); a crashed run of another file of
the PSP (no progress within the busy window) is undone by the next import's start, as its own
failure would have undone it, so its keys are free; a row whose key a running import of another
period holds makes the file `settlement_run_busy` until that import finishes or fails."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from ledger.verify import ledger_verify
from reconciliation.errors import SettlementRunBusyError
from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
from reconciliation.selectors import receivable_check
from reconciliation.services import reconcile, reconcile_import
from tests.reconciliation.held_import import import_held_at_finish
from tests.reconciliation.sandbox_day import report, today

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="two connections at once"),
]


def _settled(result, *, rows: int = 4) -> None:
    """The file's rows settled (not read as sent again): matched, posted, the receivable 0."""
    assert result.created and result.matched == result.rows == rows, result
    run = ReconciliationRun.objects.get(pk=result.run_id)
    assert run.status == "done" and run.summary["sent_again"] == 0, run.summary
    assert not Discrepancy.objects.filter(psp="alpha", status="open").exists()
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check
    assert ledger_verify().ok


def _crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _failed_without_undo(monkeypatch, raw: bytes) -> ReconciliationRun:
    """An import that failed in its finish (its lines matched and committed) and whose undo failed
    too (the database gone): the run is left in `posting` with its lines."""
    with monkeypatch.context() as m:
        m.setattr(reconcile, "_finish", _raise)
        m.setattr(reconcile, "_run_fail", lambda run, exc: None)  # the undo fails as well
        with pytest.raises(RuntimeError, match="connection lost"):
            reconcile_import(psp="alpha", raw=raw, file_name="alpha-pull.csv", source="scheduled")
    run = ReconciliationRun.objects.get(psp="alpha")
    assert run.status == "posting" and StatementLine.objects.filter(run=run).count() == 4
    return run


def _raise(*args, **kwargs):
    raise RuntimeError("connection lost in the finish")


@pytest.mark.parametrize("parser", ["postgresql", "python"])
def test_a_stale_failed_run_whose_lines_remain_does_not_make_the_day_sent_again(a_day_of_payments, monkeypatch, parser):
    """The pull's import failed and its undo too (lines left, run in `posting`); 40 minutes later
    finance imports the day's report (the portal copy: other bytes). Its rows settle the day
    (matched, receivable 0), they are not the dead lines "sent again"; the dead run is undone
    (failed, no lines). `parser`: the COPY path (clean LF file; the dead run's file is the CRLF
    copy) and the staged Python path (CRLF; the dead run's file LF)."""
    lf = report("alpha")
    dead_raw, raw = (_crlf(lf), lf) if parser == "postgresql" else (lf, _crlf(lf))
    dead = _failed_without_undo(monkeypatch, dead_raw)
    stale = timezone.now() - dt.timedelta(minutes=40)
    ReconciliationRun.objects.filter(pk=dead.pk).update(created_at=stale, progress_at=stale)

    result = reconcile_import(psp="alpha", raw=raw, file_name="alpha-portal.csv", source="upload")
    assert ReconciliationRun.objects.get(pk=result.run_id).summary["parser"] == parser
    _settled(result)
    dead.refresh_from_db()
    assert dead.status == "failed" and "crashed" in dead.summary["error"], dead.summary
    assert not StatementLine.objects.filter(run=dead).exists()
    # and the dead run's own file, again, is now the report sent again (nothing settled twice)
    again = reconcile_import(psp="alpha", raw=dead_raw)
    assert again.run_id == dead.pk and again.matched == again.rows == 4
    assert ReconciliationRun.objects.get(pk=dead.pk).summary["sent_again"] == 4
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check
    assert ledger_verify().ok


def _next_day(raw: bytes) -> bytes:
    """The same rows in a report of the next day (its trailer's date): another period, so the
    overlap rule does not keep it out (a PSP repeating yesterday's rows in today's report)."""
    day = today().isoformat()
    head, trailer = raw.rstrip(b"\n").rsplit(b"\n", 1)
    assert trailer.startswith(b"end_of_report,") and day.encode() in trailer, trailer
    return head + b"\n" + trailer.replace(day.encode(), (today() + dt.timedelta(days=1)).isoformat().encode()) + b"\n"


@pytest.mark.parametrize("parser", ["postgresql", "python"])
def test_rows_held_by_a_running_import_of_another_period_are_not_sent_again(a_day_of_payments, monkeypatch, parser):
    """An import of the day runs (its lines matched and committed, held in its finish); a report
    of the next day repeating its rows arrives. It is not read as that import's lines sent again
    (it was: `done`, nothing settled, and when the first import then failed the day was
    unsettled for good): it is busy. After the first import failed, it imports and settles them.
    `parser`: the next day's file clean (COPY, `_seen_create`) or CRLF (staged, `_stage_done`)."""
    lf = report("alpha")
    tomorrow = _next_day(lf) if parser == "postgresql" else _crlf(_next_day(lf))
    thread, release, errors = import_held_at_finish(
        monkeypatch, lf, fail="the first import fails in its finish", file_name="alpha-pull.csv", source="scheduled"
    )
    try:
        with pytest.raises(SettlementRunBusyError, match="not finished yet"):
            reconcile_import(psp="alpha", raw=tomorrow, file_name="alpha-next.csv", source="upload")
    finally:
        release.set()
        thread.join(60)
    assert not thread.is_alive() and errors and "fails in its finish" in str(errors[0]), errors
    assert StatementLine.objects.count() == 0  # both undone: nothing was imported

    result = reconcile_import(psp="alpha", raw=tomorrow, file_name="alpha-next.csv", source="upload")
    assert ReconciliationRun.objects.get(pk=result.run_id).summary["parser"] == parser
    _settled(result)


def test_a_capture_named_only_by_a_running_import_of_the_next_day_is_missing_at_the_psp(a_day_of_payments, monkeypatch):
    """What was wrong: the finish opens "missing at PSP" for each capture or refund of the report's
    period that no line names (`_discrepancies_sql`), and it read the lines of *any* run. The PSP
    settled one of today's captures in tomorrow's report; tomorrow's file imports (its lines
    matched and committed, held in its finish) while today's file, which lacks that capture,
    finishes: the capture was named by a line that was not final, so no discrepancy was opened;
    tomorrow's import then failed (its lines removed) and the capture was neither settled nor
    missing at the PSP: nothing told finance (only the aging kept it). What holds now: only the
    lines of a finished run (or the run's own) name an item; the capture is missing at the PSP,
    and tomorrow's file, once imported, resolves it."""
    header, *records, trailer = report("alpha").rstrip(b"\n").split(b"\n")
    [late] = [r for r in records if r.startswith(b"capture,") and b",730," in r]
    others = [r for r in records if r != late]
    day, nxt = today().isoformat().encode(), (today() + dt.timedelta(days=1)).isoformat().encode()
    today_file = b"\n".join([header, *others, trailer]) + b"\n"
    tomorrow_file = b"\n".join([header, late, trailer.replace(day, nxt)]) + b"\n"
    held = import_held_at_finish(monkeypatch, tomorrow_file, fail="tomorrow's import fails in its finish",
                                 file_name="alpha-next.csv", source="scheduled")  # fmt: skip
    try:
        result = reconcile_import(psp="alpha", raw=today_file, file_name="alpha-today.csv", source="upload")
    finally:
        held.release.set()
        held.thread.join(60)
    assert not held.thread.is_alive() and held.errors and "fails in its finish" in str(held.errors[0])
    assert result.created and result.rows == result.matched == 3, result
    missing = Discrepancy.objects.filter(psp="alpha", kind="missing_at_psp")
    assert [(d.payera_amount, d.status) for d in missing] == [(730, "open")], list(missing.values())

    again = reconcile_import(psp="alpha", raw=tomorrow_file, file_name="alpha-next.csv", source="upload")
    assert again.created and again.rows == again.matched == 1, again
    assert missing.get().status == "resolved"
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check
    assert ledger_verify().ok
