"""The scheduled pull's total deadline and its wait for a busy import (PostgreSQL, threads; real
sandbox payments and reports over HTTP; session 16).

What was wrong (deadline): the pull waits for a busy import of the same PSP day for up to
RECONCILIATION_PULL_BUSY_WAIT_SECONDS (30 minutes) *per file*, and a pull fetches every day of the
catch-up window of every PSP: one pull had no total limit. Its Celery task is acks_late and the
broker's visibility_timeout is 3,600 s (payera/settings/base.py): a pull running past it is
delivered again, and a second pull runs beside the first (the same days fetched, waited for and
imported twice at once). What holds now: the pull stops at RECONCILIATION_PULL_DEADLINE_SECONDS
(default 2,700; reconciliation.E003 keeps it 600 s under the visibility timeout): no further day is
fetched or imported and a wait stops; the days it left are not covered, so the next pull fetches
them — also a day whose wait was cut while another file of that day imported (that file, once
done, covers the day's period).

What was wrong (wait): every poll (15 s) imported the pulled file again — parsed it, and when its
rows were held by an unfinished import, loaded and matched it too — only to be refused again. What
holds now: while waiting the pull only looks at the runs it waits for (one query on their status
and heartbeat) and imports its file again once they have finished."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.core.checks import run_checks
from django.db import connection

from psp_adapters.registry import get_adapter
from reconciliation.errors import SettlementRunBusyError
from reconciliation.models import Discrepancy, ReconciliationRun
from reconciliation.selectors import receivable_check
from reconciliation.services import reconcile, reconcile_import, reconcile_pull
from reconciliation.services.reconcile import pull_days
from tests.reconciliation.held_import import import_held_at_finish, start_thread
from tests.reconciliation.sandbox_day import report, split_report, today

pytestmark = pytest.mark.django_db(transaction=True)
two_connections = pytest.mark.skipif(connection.vendor != "postgresql", reason="two connections at once")


def _imports_counted(monkeypatch, *, sleep: float = 0.0) -> list[str]:
    """Every import the pull starts (its file's name), each taking `sleep` seconds longer."""
    calls: list[str] = []
    original = reconcile.reconcile_import

    def counted(**kwargs):
        calls.append(kwargs.get("file_name", ""))
        try:
            return original(**kwargs)
        finally:
            time.sleep(sleep)

    monkeypatch.setattr(reconcile, "reconcile_import", counted)
    return calls


def _until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def _pull_while_the_refunds_file_imports(settings, monkeypatch, *, wait: float, deadline: float, why: str) -> None:
    """Alpha's pull of the day runs while finance's refunds file of the day imports (held in its
    finish), the pull waiting for a busy import at most `wait` seconds and pulling at most `deadline`
    seconds: it gives up (past its `why`) within 15 s, having pulled nothing."""
    settings.RECONCILIATION_PULL_BUSY_POLL_SECONDS = 0.1
    settings.RECONCILIATION_PULL_BUSY_WAIT_SECONDS = wait
    settings.RECONCILIATION_PULL_DEADLINE_SECONDS = deadline
    _, refunds = split_report(report("alpha"))
    held = import_held_at_finish(monkeypatch, refunds, file_name="alpha-refunds.csv", source="upload")
    pulled: dict = {}
    puller = start_thread(lambda: pulled.update(reconcile_pull(day=today(), psps=["alpha"])), held.errors)
    try:
        puller.join(15)
        assert not puller.is_alive(), f"the pull waited past its {why}"
    finally:
        held.finish(puller)
    assert not held.errors, held.errors
    assert "alpha" not in pulled


def test_a_pull_of_several_days_stops_at_its_deadline_and_leaves_the_rest_for_the_next_pull(day, settings, monkeypatch):
    yesterday = today() - dt.timedelta(days=1)
    first = yesterday - dt.timedelta(days=2)
    # reconciliation knows `first` (beta's report of that day): alpha's pull catches up from there
    reconcile_import(psp="beta", raw=get_adapter("beta").fetch_settlement_report(first), source="scheduled")
    days = [first, first + dt.timedelta(days=1), yesterday]
    assert pull_days(psp="alpha", yesterday=yesterday) == days

    settings.RECONCILIATION_PULL_DEADLINE_SECONDS = 1.0
    with monkeypatch.context() as m:
        calls = _imports_counted(m, sleep=1.2)  # each import takes longer than the whole pull may
        started = time.monotonic()
        pulled = reconcile_pull(psps=["alpha"])
        assert time.monotonic() - started < 2.5
    assert calls == [f"alpha-{first}.csv"], calls  # the first day only; the deadline passed then
    assert pulled["alpha"].created
    assert list(ReconciliationRun.objects.filter(psp="alpha").values_list("period_start", "status")) == [
        (first, "done")
    ]
    assert pull_days(psp="alpha", yesterday=yesterday) == days[1:]  # left, not covered

    settings.RECONCILIATION_PULL_DEADLINE_SECONDS = 60.0
    reconcile_pull(psps=["alpha"])  # the next pull imports the days the first left
    done = ReconciliationRun.objects.filter(psp="alpha", status="done")
    assert sorted(done.values_list("period_start", flat=True)) == days


@two_connections
def test_a_pull_waiting_for_a_busy_import_stops_at_its_deadline_and_the_day_is_pulled_again(
    a_day_of_payments, settings, monkeypatch
):
    """Finance's refunds file of the day imports (held in its finish) while the pull fetches the
    day's full file: the pull waits, but not past its deadline (on main it waited the full 60 s
    per file). The other file, once done, covers the day; the day is pulled again all the same,
    and then settles."""
    _pull_while_the_refunds_file_imports(settings, monkeypatch, wait=60, deadline=1.5, why="deadline")
    left = ReconciliationRun.objects.get(psp="alpha", source="scheduled")
    assert left.status == "failed" and left.summary["pull_left"], left.summary
    assert ReconciliationRun.objects.get(psp="alpha", source="upload").status == "done"  # it covers the day
    tomorrow = today() + dt.timedelta(days=1)
    assert today() in pull_days(psp="alpha", yesterday=tomorrow), "the day the pull left is never pulled again"

    settings.RECONCILIATION_PULL_DEADLINE_SECONDS = 60.0
    result = reconcile_pull(day=today(), psps=["alpha"])["alpha"]
    assert result.created and result.run_id == left.id and result.rows == result.matched == 4, result
    assert ReconciliationRun.objects.get(pk=left.id).summary["sent_again"] == 1  # the refunds file's line
    assert today() not in pull_days(psp="alpha", yesterday=tomorrow)
    assert not Discrepancy.objects.filter(psp="alpha", status__in=("open", "investigating")).exists()
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check


@two_connections
def test_the_pull_waits_for_a_busy_import_without_importing_its_file_at_every_poll(
    a_day_of_payments, settings, monkeypatch
):
    """The refunds file of the day held in its finish for about 2 s, the pull polling every 0.1 s:
    it imports its file twice (refused busy once, then imported), not once per poll (about 20)."""
    settings.RECONCILIATION_PULL_BUSY_POLL_SECONDS = 0.1
    settings.RECONCILIATION_PULL_BUSY_WAIT_SECONDS = 60
    _, refunds = split_report(report("alpha"))
    held = import_held_at_finish(monkeypatch, refunds, file_name="alpha-refunds.csv", source="upload")
    calls = _imports_counted(monkeypatch)
    pulled: dict = {}
    puller = start_thread(lambda: pulled.update(reconcile_pull(day=today(), psps=["alpha"])), held.errors)
    try:
        _until(lambda: calls)
        time.sleep(2.0)  # the pull waits meanwhile, polling every 0.1 s
    finally:
        held.finish(puller)
    assert not held.errors and not puller.is_alive(), held.errors
    assert pulled["alpha"].created and pulled["alpha"].rows == pulled["alpha"].matched == 4
    assert len(calls) == 2, f"the pull imported its file {len(calls)} times while it waited"


@two_connections
def test_a_pull_whose_rows_a_running_import_holds_loads_its_file_again_only_once_that_import_ended(
    a_day_of_payments, settings, monkeypatch
):
    """The day's import runs (held in its finish); the PSP's next report repeats its rows (its
    keys are held by that import's lines: the pulled file is loaded and matched, then refused
    busy, its run failed). The pull imports it again once that import has finished, not at
    every poll: its run was attempted twice (each attempt loads and matches the whole file)."""
    settings.RECONCILIATION_PULL_BUSY_POLL_SECONDS = 0.1
    settings.RECONCILIATION_PULL_BUSY_WAIT_SECONDS = 60
    lf = report("alpha")
    day, trailer_day = today().isoformat().encode(), (today() + dt.timedelta(days=1)).isoformat().encode()
    head, trailer = lf.rstrip(b"\n").rsplit(b"\n", 1)
    next_day = head + b"\n" + trailer.replace(day, trailer_day) + b"\n"  # the same rows, the next day
    held = import_held_at_finish(monkeypatch, lf, file_name="alpha-day.csv", source="upload")
    refused = []
    original = reconcile.reconcile_import

    def spy(**kwargs):
        try:
            return original(**kwargs)
        except SettlementRunBusyError as exc:
            refused.append(exc)
            raise

    monkeypatch.setattr(reconcile, "reconcile_import", spy)
    # the PSP's report of the next day, fetched over the adapter: it repeats the day's rows
    monkeypatch.setattr(type(get_adapter("alpha")), "fetch_settlement_report", lambda self, when: next_day)
    pulled: dict = {}
    nxt = today() + dt.timedelta(days=1)
    puller = start_thread(lambda: pulled.update(reconcile_pull(day=nxt, psps=["alpha"])), held.errors)
    try:
        _until(lambda: refused)
        assert refused and "not finished yet" in refused[0].message, refused
        time.sleep(2.0)  # the pull waits meanwhile, polling every 0.1 s
    finally:
        held.finish(puller)
    assert not held.errors and not puller.is_alive(), held.errors
    result = pulled["alpha"]
    run = ReconciliationRun.objects.get(pk=result.run_id)
    assert run.status == "done" and run.period_start == nxt
    assert run.attempt == 2, f"the pulled file was loaded and matched {run.attempt} times while it waited"
    assert len(refused) == 1, len(refused)


def test_the_pull_deadline_must_end_safely_before_the_visibility_timeout(settings):
    assert not [e for e in run_checks() if e.id in ("reconciliation.E002", "reconciliation.E003")]
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    settings.RECONCILIATION_PULL_DEADLINE_SECONDS = 3300  # 300 s left for the last import: too tight
    [error] = [e for e in run_checks() if e.id == "reconciliation.E003"]
    assert "visibility_timeout" in error.msg
    settings.RECONCILIATION_PULL_DEADLINE_SECONDS = 0
    assert [e.id for e in run_checks() if e.id.startswith("reconciliation.E00")] == ["reconciliation.E002"]


def test_a_day_the_pull_left_stays_due_after_its_next_import_fails(a_day_of_payments, monkeypatch):
    """A day the pull left (its file a failed run marked pull_left, another file of the day done)
    was fetched again by the next pull, whose import took the failed run over and cleared its
    summary: when that import failed too (a database error, a worker killed in it), the run was
    failed without the mark, the other file still covered the day, and no pull fetched it again —
    the day's captures never reconciled. The mark now stays until an import of the file is done."""
    from django.db import OperationalError

    _, refunds = split_report(report("alpha"))
    reconcile_import(psp="alpha", raw=refunds, file_name="alpha-refunds.csv", source="upload")
    reconcile._pull_left(psp="alpha", raw=report("alpha"), when=today(), reason="the pull's deadline passed")
    tomorrow = today() + dt.timedelta(days=1)
    assert today() in pull_days(psp="alpha", yesterday=tomorrow)

    def failing_heal(*args, **kwargs):
        raise OperationalError("canceling statement due to statement timeout")

    with monkeypatch.context() as m:
        m.setattr(reconcile, "_heal", failing_heal)
        assert "alpha" not in reconcile_pull(day=today(), psps=["alpha"])
    left = ReconciliationRun.objects.get(psp="alpha", source="scheduled")
    assert left.status == "failed" and "statement timeout" in left.summary["error"], left.summary
    assert today() in pull_days(psp="alpha", yesterday=tomorrow), "the day the pull left is never pulled again"

    result = reconcile_pull(day=today(), psps=["alpha"])["alpha"]
    assert result.created and result.run_id == left.id and result.rows == result.matched == 4, result
    assert today() not in pull_days(psp="alpha", yesterday=tomorrow)


def test_a_covered_day_whose_pulled_file_fails_to_import_is_pulled_again(a_day_of_payments, monkeypatch):
    """Finance's refunds file of the day imported first (done: it covers the day); the pull's
    import of the day's full file then failed (an ordinary failure, a statement timeout: not the
    deadline's pull_left path). pull_days fetched only days no done run covers, so the day was
    never fetched again and its three captures never reconciled (receivable left owed). The day
    now stays due until a scheduled import of the pulled file is done."""
    from django.db import OperationalError

    _, refunds = split_report(report("alpha"))
    reconcile_import(psp="alpha", raw=refunds, file_name="alpha-refunds.csv", source="upload")
    tomorrow = today() + dt.timedelta(days=1)
    original = reconcile._heal
    failures = []

    def heal_failing_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise OperationalError("canceling statement due to statement timeout")
        return original(*args, **kwargs)

    monkeypatch.setattr(reconcile, "_heal", heal_failing_once)
    assert "alpha" not in reconcile_pull(day=today(), psps=["alpha"])
    failed = ReconciliationRun.objects.get(psp="alpha", source="scheduled")
    assert failed.status == "failed" and "statement timeout" in failed.summary["error"], failed.summary
    assert today() in pull_days(psp="alpha", yesterday=tomorrow), "the day is never pulled again"

    result = reconcile_pull(day=today(), psps=["alpha"])["alpha"]  # the next pull: the day again
    assert result.created and result.run_id == failed.id and result.rows == result.matched == 4, result
    assert today() not in pull_days(psp="alpha", yesterday=tomorrow)
    assert not Discrepancy.objects.filter(psp="alpha", status__in=("open", "investigating")).exists()
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check


def test_a_day_whose_pulled_import_crashed_stays_due_after_another_file_of_the_day_imports(
    a_day_of_payments, monkeypatch
):
    """The pull's import of the day crashed (the worker killed in its heal: the run left in its
    phase), then finance's refunds file of the day was uploaded: its start undid the crashed run
    (failed, "the import crashed") and its import covered the day. The day was never pulled again
    (pull_days read only done runs and runs the deadline left); it now stays due. The same bytes
    uploaded by hand and failing again keep it due too."""
    from django.db import OperationalError

    def killed(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    tomorrow = today() + dt.timedelta(days=1)
    reconcile_import(psp="beta", raw=report("beta"), source="scheduled")  # reconciliation knows the day
    with monkeypatch.context() as m:
        m.setattr(reconcile, "_heal", killed)
        m.setattr(reconcile, "_run_fail", lambda run, exc: None)  # the worker died: nothing undone
        assert "alpha" not in reconcile_pull(day=today(), psps=["alpha"])
    crashed = ReconciliationRun.objects.get(psp="alpha", source="scheduled")
    assert crashed.status not in ("done", "failed"), crashed.status  # left in its phase
    ReconciliationRun.objects.filter(pk=crashed.pk).update(progress_at=crashed.progress_at - dt.timedelta(hours=1))

    _, refunds = split_report(report("alpha"))
    reconcile_import(psp="alpha", raw=refunds, file_name="alpha-refunds.csv", source="upload")
    assert ReconciliationRun.objects.get(pk=crashed.pk).status == "failed"
    assert today() in pull_days(psp="alpha", yesterday=tomorrow), "the crashed day is never pulled again"

    with monkeypatch.context() as m:  # finance uploads the pulled file's bytes: it fails too
        m.setattr(reconcile, "_heal", killed)
        with pytest.raises(OperationalError):
            reconcile_import(psp="alpha", raw=report("alpha"), file_name="alpha.csv", source="upload")
    assert ReconciliationRun.objects.get(pk=crashed.pk).source == "upload"
    assert today() in pull_days(psp="alpha", yesterday=tomorrow)

    result = reconcile_pull(day=today(), psps=["alpha"])["alpha"]
    assert result.created and result.run_id == crashed.id and result.rows == result.matched == 4, result
    assert today() not in pull_days(psp="alpha", yesterday=tomorrow)
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check


@two_connections
def test_a_pull_whose_wait_ends_before_the_other_file_of_the_day_imported_leaves_the_day_due(
    a_day_of_payments, settings, monkeypatch
):
    """Finance's refunds file of the day imports (held in its finish) longer than the pull's wait
    (RECONCILIATION_PULL_BUSY_WAIT_SECONDS, not its deadline): the pull gave up busy with no run of
    its file recorded, the refunds file then covered the day, and no pull fetched it again. The
    day is now left as at the deadline (a failed run marked pull_left), pulled again, and settles."""
    _pull_while_the_refunds_file_imports(settings, monkeypatch, wait=0.5, deadline=60.0, why="wait")
    assert ReconciliationRun.objects.get(psp="alpha", source="upload").status == "done"  # it covers the day
    tomorrow = today() + dt.timedelta(days=1)
    assert today() in pull_days(psp="alpha", yesterday=tomorrow), "the day the pull gave up is never pulled again"

    result = reconcile_pull(day=today(), psps=["alpha"])["alpha"]
    assert result.created and result.rows == result.matched == 4, result
    assert today() not in pull_days(psp="alpha", yesterday=tomorrow)
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check
