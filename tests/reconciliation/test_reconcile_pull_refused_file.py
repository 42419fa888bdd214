"""A pulled settlement report the PSP sends malformed (docs/reconciliation.md "Three ways in",
runbook reconciliation-pull-failing.md). Real sandbox payments and reports over HTTP; the file's
bytes are the PSP's, cut short as a download cut short would be (its trailer missing).

What was wrong: a pulled file refused at parse (`SettlementFileInvalidError`) left nothing behind,
no run, only an error line in the log. When another file of the day (finance's refunds file) was
imported, the day counted as covered and no later night fetched it again: the day's captures were
never reconciled and their receivable stayed owed without a discrepancy. A day with no other file
was fetched again every night of the 7-day window, failing each time, then fell out of the window
with nobody told. What holds now: the refused pull is recorded as a `failed` run of the day
(`summary["pull_left"]`, the count of nights in `pull_failures`), so the day stays due until a
scheduled import of it is done; from RECONCILIATION_PULL_ALERT_AFTER_FAILURES nights (3) on it is
flagged for operations (`needs_operations`, an error in the log, the dashboard panel and the
`payera_reconciliation_pull_failing_days` gauge).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from psp_adapters.registry import get_adapter
from reconciliation.models import ReconciliationRun
from reconciliation.selectors import receivable_check
from reconciliation.services import reconcile_import
from reconciliation.tasks import reconcile_pull_task
from tests.reconciliation.sandbox_day import report, split_report, today

pytestmark = pytest.mark.django_db(transaction=True)


def _cut_short(raw: bytes) -> bytes:
    """The file as a download cut short: its `end_of_report` trailer missing (refused whole)."""
    return raw.rstrip(b"\n").rsplit(b"\n", 1)[0] + b"\n"


def _nightly_pull(monkeypatch, day: dt.date, *, malformed: bool) -> None:
    """Celery beat's pull on the night after `day`; alpha's file cut short when `malformed`."""
    at = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(2, 30), dt.UTC)
    adapter = get_adapter("alpha")
    real = adapter.fetch_settlement_report
    with monkeypatch.context() as m:
        m.setattr(timezone, "now", lambda: at)
        if malformed:
            m.setattr(adapter, "fetch_settlement_report", lambda when: _cut_short(real(when)))
        reconcile_pull_task.apply().get()


def test_a_refused_pulled_file_of_a_day_another_file_covers_is_pulled_again(a_day_of_payments, monkeypatch):
    day = today()
    _, refunds = split_report(report("alpha"))
    reconcile_import(psp="alpha", raw=refunds, file_name="alpha-refunds.csv", source="upload", actor="finance")
    _nightly_pull(monkeypatch, day, malformed=True)  # the PSP's file of the day arrives cut short
    assert not ReconciliationRun.objects.filter(psp="alpha", status="done", source="scheduled").exists()
    _nightly_pull(monkeypatch, day + dt.timedelta(days=1), malformed=False)  # the PSP fixed it
    assert ReconciliationRun.objects.filter(
        psp="alpha", status="done", source="scheduled", period_start=day
    ).exists(), "the refused day was never pulled again"
    [check] = receivable_check(psp="alpha")
    assert check["ledger"] == 0 and check["ok"], check
    from reconciliation.services.reconcile import pull_failing_days

    assert pull_failing_days() == []


def test_a_day_whose_pulled_file_keeps_failing_is_flagged_for_operations(
    a_day_of_payments, monkeypatch, settings, caplog
):
    from reconciliation.services.reconcile import pull_failing_days

    settings.RECONCILIATION_PULL_ALERT_AFTER_FAILURES = 3
    day = today()
    for night in range(2):
        _nightly_pull(monkeypatch, day + dt.timedelta(days=night), malformed=True)
    [failed] = ReconciliationRun.objects.filter(psp="alpha", period_start=day, status="failed")
    assert (failed.summary["pull_failures"], failed.summary.get("needs_operations")) == (2, None), failed.summary
    assert pull_failing_days() == []
    caplog.clear()
    _nightly_pull(monkeypatch, day + dt.timedelta(days=2), malformed=True)
    failed.refresh_from_db()
    assert (failed.summary["pull_failures"], failed.summary["needs_operations"]) == (3, True), failed.summary
    assert "refused" in failed.summary["error"]
    assert pull_failing_days() == [("alpha", day)]
    from payera.core.metrics import render_metrics
    from reconciliation.panels import settlement_pull_panel

    assert b'payera_reconciliation_pull_failing_days{psp="alpha"} 1.0' in render_metrics()
    assert settlement_pull_panel(None)[0].value == 1
    assert any(r.levelname == "ERROR" and "operations" in r.getMessage() for r in caplog.records)
    # the PSP sends the file right at last: imported, and the flag is gone
    _nightly_pull(monkeypatch, day + dt.timedelta(days=3), malformed=False)
    assert ReconciliationRun.objects.filter(psp="alpha", status="done", period_start=day).exists()
    assert pull_failing_days() == []


def test_a_flagged_day_whose_file_finance_imported_first_clears_when_the_pull_gets_it(
    a_day_of_payments, monkeypatch, settings
):
    """The runbook's step 4 (reconciliation-pull-failing.md): finance downloads the day's report
    from the PSP's dashboard and imports it (the admin upload or the command), then the pull gets
    the same file from the PSP. That pull found the file imported already (the import is idempotent
    on the file's bytes: no new run) and so no *scheduled* import of the day was ever done: the day
    stayed flagged for good (the alert firing for ever, hiding every later failing day) and was
    pulled again every night of the window for nothing. The pull getting a file that is imported
    already is the PSP's own file imported: the flag clears and the day is no longer due."""
    from reconciliation.services.reconcile import pull_days, pull_failing_days

    settings.RECONCILIATION_PULL_ALERT_AFTER_FAILURES = 3
    day = today()
    for night in range(3):
        _nightly_pull(monkeypatch, day + dt.timedelta(days=night), malformed=True)
    assert pull_failing_days() == [("alpha", day)]
    # finance obtains the PSP's file (the bytes the PSP serves) and imports it
    reconcile_import(psp="alpha", raw=report("alpha"), file_name="alpha-from-dashboard.csv", source="upload",
                     actor="finance")
    _nightly_pull(monkeypatch, day + dt.timedelta(days=3), malformed=False)  # the PSP serves the same file
    assert pull_failing_days() == [], "the day stayed flagged after the PSP's file was imported"
    assert day not in pull_days(psp="alpha", yesterday=day + dt.timedelta(days=4))
    [check] = receivable_check(psp="alpha")
    assert check["ok"], check
