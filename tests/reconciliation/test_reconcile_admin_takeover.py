"""An admin upload whose import is taken over by another import of the same file (threads,
PostgreSQL; real sandbox payments over HTTP and the sandbox's own alpha report).

What was wrong: `reconcile_import` stops an import whose run another import took over with
`RunTakenOverError` (a RuntimeError, not a PayeraError: the command and the pull see it as a
failure); the upload view caught only PayeraError, so finance got a 500 page (and the error
page's stack trace in the logs) for what is a plain outcome: the other import owns the day. What
holds now: the upload page answers 200 with the form and a message saying what happened and what
to do (the other import has the file; look at its run, upload again later if it failed), and
nothing of the stopped upload is left: the run is the other import's, imported once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.admin.utils import quote
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.utils import timezone

from ledger.models import Journal
from ledger.verify import ledger_verify
from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
from reconciliation.selectors import receivable_check
from reconciliation.services import reconcile_import
from tests.backoffice.staff import make_staff, otp_force_login
from tests.reconciliation.held_import import held_at_finish
from tests.reconciliation.sandbox_day import report

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="two connections at once"),
]

UPLOAD = "/admin/reconciliation/reconciliationrun/upload/"


def test_an_upload_taken_over_by_another_import_answers_a_message_not_a_500(a_day_of_payments, monkeypatch):
    raw = report("alpha")
    user = make_staff("root", superuser=True)
    client = otp_force_login(Client(raise_request_exception=False), user)
    answers = []

    def upload() -> None:
        answers.append(client.post(UPLOAD, {"psp": "alpha", "report": SimpleUploadedFile("alpha.csv", raw)}))

    held = held_at_finish(monkeypatch, upload)
    try:
        # the upload stalls past the busy window: the same file, imported by another, takes its run over
        run = ReconciliationRun.objects.get(psp="alpha")
        ago = timezone.now() - dt.timedelta(minutes=40)
        ReconciliationRun.objects.filter(pk=run.pk).update(created_at=ago, progress_at=ago)
        taken = reconcile_import(psp="alpha", raw=raw)
        assert taken.created and taken.run_id == run.pk and taken.matched == taken.rows == 4
    finally:
        held.finish()
    assert not held.errors, held.errors
    [answer] = answers
    assert answer.status_code == 200, answer.status_code
    page = answer.content.decode()
    assert "taken over by another import" in page and "upload" in page.lower()
    assert f"{quote(run.pk)}/change/" in page  # where to look: the run that owns the day
    assert "Traceback" not in page
    # nothing half-imported: the day is the other import's, once
    assert ReconciliationRun.objects.filter(psp="alpha").count() == 1
    run.refresh_from_db()
    assert run.status == "done" and run.summary["matched"] == run.summary["rows"] == 4
    assert StatementLine.objects.filter(run_id=run.pk).count() == 4
    assert not StatementLine.objects.filter(duplicate=True).exists() and not Discrepancy.objects.exists()
    assert Journal.objects.filter(kind="settlement").count() == 1
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 0, check
    assert ledger_verify().ok


def test_the_command_taken_over_by_another_import_says_so_without_a_traceback(a_day_of_payments, monkeypatch, tmp_path):
    """The same for `manage.py reconcile`: it let RunTakenOverError through (a traceback); it now
    stops with a CommandError (exit 1) saying what happened and what to do."""
    from django.core.management import CommandError, call_command

    raw = report("alpha")
    path = tmp_path / "alpha.csv"
    path.write_bytes(raw)
    failures = []

    def command() -> None:
        try:
            call_command("reconcile", str(path), "--psp", "alpha", "--json")
        except BaseException as exc:  # noqa: BLE001 - looked at below
            failures.append(exc)

    held = held_at_finish(monkeypatch, command)
    try:
        run = ReconciliationRun.objects.get(psp="alpha")
        ago = timezone.now() - dt.timedelta(minutes=40)
        ReconciliationRun.objects.filter(pk=run.pk).update(created_at=ago, progress_at=ago)
        assert reconcile_import(psp="alpha", raw=raw).run_id == run.pk
    finally:
        held.finish()
    [failure] = failures
    assert isinstance(failure, CommandError), repr(failure)
    assert "taken over by another import" in str(failure) and run.pk in str(failure)
    run.refresh_from_db()
    assert run.status == "done" and Journal.objects.filter(kind="settlement").count() == 1
