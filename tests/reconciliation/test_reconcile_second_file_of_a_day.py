"""A PSP's two files of one day that share no line (its captures file and its refunds file), the
second arriving while the first imports (threads, PostgreSQL; real sandbox payments over HTTP and
the sandbox's own alpha report, split by record type; session 15).

Decided (docs/reconciliation.md "Import once"): two files of one PSP period import one after the
other, also when they share no line — while one imports, the other is `settlement_run_busy` —
because the lines of an import are not final until it is done (whether two files share a row is
only known once both are loaded, and a finish's "missing at PSP" reads the other's lines). What
must hold is that the second file is not refused for good:

- the admin upload tells finance what is going on and what to do (which import of which period
  runs, in which phase, since when; nothing imported; upload again once it has finished), and the
  same upload afterwards imports the file: its rows settle, they are not read as sent again;
- the nightly pull waits for the other import and then imports its file. What was wrong: the
  pull logged the busy PSP and went on; the other import, once done, covered the day, so no later
  night pulled the day again and the pulled file was never imported (its captures stayed
  "missing at PSP", the receivable unsettled)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse

from ledger.verify import ledger_verify
from reconciliation.errors import SettlementRunBusyError
from reconciliation.models import Discrepancy, ReconciliationRun
from reconciliation.selectors import receivable_check
from reconciliation.services import reconcile, reconcile_pull
from tests.backoffice.staff import make_staff, otp_force_login
from tests.reconciliation.held_import import import_held_at_finish, start_thread
from tests.reconciliation.sandbox_day import report, split_report, today

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="two connections at once"),
]


def _day_settled() -> None:
    assert not Discrepancy.objects.filter(psp="alpha", status__in=("open", "investigating")).exists()
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check
    assert ledger_verify().ok


def _finance(client):
    from django.contrib.auth.models import Permission

    from payera.staff.access import ACCESS_ALL_MERCHANTS

    user = make_staff("fin", role="finance")
    app, codename = ACCESS_ALL_MERCHANTS.split(".")
    user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    otp_force_login(client, user)


def test_the_refunds_file_uploaded_while_the_captures_file_imports_is_busy_then_imports(
    client, a_day_of_payments, monkeypatch
):
    captures, refunds = split_report(report("alpha"))
    _finance(client)
    upload = reverse("admin:reconciliation_reconciliationrun_upload")
    thread, release, errors = import_held_at_finish(
        monkeypatch, captures, file_name="alpha-captures.csv", source="scheduled"
    )
    try:
        first = ReconciliationRun.objects.get(psp="alpha")
        busy = client.post(upload, {"psp": "alpha", "report": _file("alpha-refunds.csv", refunds)})
        page = busy.content.decode()
        assert busy.status_code == 200, busy.status_code  # the form again, with the error
        assert f"{first.id} is importing another file of this period right now" in page, page
        assert f"alpha {today()}, posting, started" in page and "last progress" in page, page
        assert "Nothing was imported from this file: import it again once that import has finished" in page
        assert ReconciliationRun.objects.filter(psp="alpha").count() == 1  # nothing recorded for it
    finally:
        release.set()
        thread.join(60)
    assert not thread.is_alive() and not errors, errors
    first.refresh_from_db()
    assert first.status == "done" and first.summary["matched"] == 3
    # the captures file alone: the day's refund is missing at the PSP, for now
    assert Discrepancy.objects.filter(psp="alpha", kind="missing_at_psp", status="open").count() == 1

    done = client.post(upload, {"psp": "alpha", "report": _file("alpha-refunds.csv", refunds)})
    assert done.status_code == 302, done.content.decode()[:2000]
    second = ReconciliationRun.objects.exclude(pk=first.pk).get(psp="alpha")
    assert second.status == "done" and second.source == "upload", second.summary
    assert second.summary["rows"] == second.summary["matched"] == 1 and second.summary["sent_again"] == 0
    assert Discrepancy.objects.get(psp="alpha", kind="missing_at_psp").status == "resolved"
    _day_settled()


def test_the_nightly_pull_waits_for_an_import_of_the_same_day_then_imports_its_file(
    a_day_of_payments, monkeypatch, settings
):
    """Finance uploads the PSP's refunds file of the day at 02:30 (held in its finish); the pull
    fetches the day's report (the PSP's full file) meanwhile: busy, it waits, and imports its file
    once the upload has finished (its captures settled, its refund the refunds file's line sent
    again): the day settles."""
    settings.RECONCILIATION_PULL_BUSY_POLL_SECONDS = 0.2
    settings.RECONCILIATION_PULL_BUSY_WAIT_SECONDS = 60
    _, refunds = split_report(report("alpha"))
    refused = threading.Event()
    original = reconcile.reconcile_import

    def spy(**kwargs):
        try:
            return original(**kwargs)
        except SettlementRunBusyError:
            refused.set()
            raise

    thread, release, errors = import_held_at_finish(
        monkeypatch, refunds, file_name="alpha-refunds.csv", source="upload"
    )
    monkeypatch.setattr(reconcile, "reconcile_import", spy)
    pulled: dict = {}
    puller = start_thread(lambda: pulled.update(reconcile_pull(day=today(), psps=["alpha"])), errors)
    try:
        assert refused.wait(60), "the pull was never refused as busy"
    finally:
        release.set()
        thread.join(60)
        puller.join(60)
    assert not thread.is_alive() and not puller.is_alive() and not errors, errors
    assert "alpha" in pulled, "the pull gave up on the busy day"
    result = pulled["alpha"]
    assert result.created and result.rows == result.matched == 4, result
    run = ReconciliationRun.objects.get(pk=result.run_id)
    assert run.source == "scheduled" and run.summary["sent_again"] == 1, run.summary
    _day_settled()


def _file(name: str, raw: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, raw)
