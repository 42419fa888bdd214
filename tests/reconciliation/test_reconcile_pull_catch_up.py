"""The nightly pull of settlement reports after a night the PSP could not be reached
(real sandbox payments and reports over HTTP; the PSP unreachable: its address refuses
connections; review 14a)."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from django.utils import timezone

from psp_adapters.registry import adapters_reset
from reconciliation.models import ReconciliationRun
from reconciliation.selectors import receivable_check
from reconciliation.services.reconcile import pull_days
from reconciliation.tasks import reconcile_pull_task
from tests.reconciliation.sandbox_day import today

pytestmark = pytest.mark.django_db(transaction=True)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed: connection refused


def _nightly_pull(monkeypatch, day: dt.date) -> None:
    """Celery beat's `reconciliation-report-pull` (02:30 UTC, no arguments) on the night after `day`."""
    at = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(2, 30), dt.UTC)
    with monkeypatch.context() as m:
        m.setattr(timezone, "now", lambda: at)
        reconcile_pull_task.apply().get()


def test_a_day_whose_nightly_pull_could_not_reach_the_psp_is_pulled_by_a_later_night(
    a_day_of_payments, settings, monkeypatch
):
    """docs/reconciliation.md "Three ways in": a PSP "that cannot be reached ... is logged ... and
    the others are pulled all the same; the next pull tries it again".

    What was wrong: `reconcile_pull` (reconciliation/services/reconcile.py) without a day pulls
    *yesterday* only, and beat calls it without one (payera/settings/base.py,
    reconciliation/tasks.py). When alpha is unreachable at 02:30 the day's report is skipped with a
    warning, and the next night's pull asks for the *next* day: nothing ever fetches the skipped
    day again. That day's settlement is never posted (no bank cash, no PSP fee, the PSP receivable
    never cleared) and, since no imported report covers its period, its captures are not even
    "missing at PSP": they only aged, silently. What holds now: the nightly pull also fetches each earlier day of
    the catch-up window (7 days) that no finished run of the PSP covers, from the first day any
    report was imported (`pull_days`): the next night imports the day it missed (here: alpha's
    day of payments matched, the receivable back to 0)."""
    day = today()
    connectors = {k: {**v, "OPTIONS": dict(v["OPTIONS"])} for k, v in settings.PSP_CONNECTORS.items()}
    reachable = connectors["alpha"]["OPTIONS"]["base_url"]
    connectors["alpha"]["OPTIONS"]["base_url"] = f"http://127.0.0.1:{_closed_port()}"
    settings.PSP_CONNECTORS = connectors
    adapters_reset()
    try:
        _nightly_pull(monkeypatch, day)  # alpha down tonight: beta pulled, alpha skipped
    finally:
        connectors["alpha"]["OPTIONS"]["base_url"] = reachable
        settings.PSP_CONNECTORS = {**connectors}
        adapters_reset()
    assert not ReconciliationRun.objects.filter(psp="alpha").exists()
    assert ReconciliationRun.objects.get(psp="beta").period_start == day

    _nightly_pull(monkeypatch, day + dt.timedelta(days=1))  # alpha back: the next night's pull
    periods = sorted(ReconciliationRun.objects.filter(psp="alpha").values_list("period_start", flat=True))
    assert day in periods, f"alpha's report of {day} was never pulled (pulled: {periods})"
    [check] = receivable_check(psp="alpha")
    assert check["ledger"] == 0 and check["ok"], check


def test_the_days_a_nightly_pull_fetches(settings):
    """Yesterday always; earlier days of the window no finished run of the PSP covers (a failed or
    missing one is fetched again), never before reconciliation's first report, never beyond the
    window; a new installation pulls yesterday only."""
    settings.RECONCILIATION_PULL_CATCH_UP_DAYS = 7
    y = dt.date(2026, 12, 20)
    assert pull_days(psp="alpha", yesterday=y) == [y]  # nothing imported yet anywhere

    def run(psp, day, status="done", n=[0]):  # noqa: B006 - a counter for unique hashes
        n[0] += 1
        ReconciliationRun.objects.create(psp=psp, file_sha256=f"{n[0]:064x}", status=status,
                                         period_start=day, period_end=day)  # fmt: skip

    run("beta", y - dt.timedelta(days=3))
    # alpha never reported: from the first report of any PSP
    assert pull_days(psp="alpha", yesterday=y) == [y - dt.timedelta(days=n) for n in (3, 2, 1, 0)]
    run("alpha", y - dt.timedelta(days=30))  # alpha's first report long ago: the window bounds it
    run("alpha", y - dt.timedelta(days=5))
    run("alpha", y - dt.timedelta(days=4), status="failed")  # its import failed: fetched again
    run("alpha", y - dt.timedelta(days=2))
    run("alpha", y)  # yesterday is fetched anyway (a report fetched again changes nothing)
    assert pull_days(psp="alpha", yesterday=y) == [y - dt.timedelta(days=n) for n in (6, 4, 3, 1, 0)]
    settings.RECONCILIATION_PULL_CATCH_UP_DAYS = 1
    assert pull_days(psp="alpha", yesterday=y) == [y]
