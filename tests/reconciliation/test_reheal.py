"""The late heal's serialization with an import (reconciliation/services/locks.py): an import's
finish (its discrepancies, the receivable check) waits while a late heal of the same PSP holds the
PSP's reconciliation lock, so neither reads the other's half-done work."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from reconciliation.models import ReconciliationRun, ReconRunStatus
from reconciliation.services import reconcile_import, reconcile_reheal
from reconciliation.services.locks import reconcile_psp_lock
from tests.reconciliation.sandbox_day import report

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL advisory locks")
def test_an_import_finishes_only_after_a_late_heal_of_its_psp_commits(a_day_of_payments):
    raw = report("alpha")
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def heal_holding_the_lock() -> None:
        try:
            with transaction.atomic():
                reconcile_psp_lock("alpha")
                held.set()
                release.wait(timeout=30)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    def run_import() -> None:
        try:
            reconcile_import(psp="alpha", raw=raw)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    heal = threading.Thread(target=heal_holding_the_lock)
    heal.start()
    assert held.wait(timeout=10)
    imp = threading.Thread(target=run_import)
    imp.start()
    imp.join(timeout=5)
    assert imp.is_alive()  # waiting for the lock, in its finish
    run = ReconciliationRun.objects.get()
    assert run.status != ReconRunStatus.DONE
    release.set()
    heal.join(timeout=10)
    imp.join(timeout=30)
    assert not imp.is_alive() and not errors, errors
    run.refresh_from_db()
    assert run.status == ReconRunStatus.DONE and run.summary["matched"] == run.summary["rows"]


def test_the_late_heal_refuses_to_run_inside_a_transaction(db):
    with transaction.atomic(), pytest.raises(RuntimeError, match="not inside a transaction"):
        reconcile_reheal()
