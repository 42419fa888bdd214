"""`payera.core.horizon`: a row stamped by `stamp_after_xid()` is never below a `committed_before()`
read while its transaction was open (session 17, w17b). Real threads, real PostgreSQL.

Why it matters: `GET /v1/events` lists a first page only below `committed_before()`, which counts
the transactions that hold a transaction id. A writer whose transaction has begun but holds no id
yet (it has only read) is not counted; had it stamped its row with the transaction's start
(`now()`) or a clock read before it took an id, the row would fall below a horizon already
handed out while it was still uncommitted, and a merchant polling the list would never see it."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from payera.core.horizon import committed_before
from payera.events.services import event_record

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions: PostgreSQL"),
]


def test_a_writer_that_held_no_transaction_id_stamps_above_a_horizon_read_meanwhile():
    started, go, stamped, release = threading.Event(), threading.Event(), threading.Event(), threading.Event()
    found: dict = {}
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:  # the transaction has begun, holding no id yet
                    cursor.execute("SELECT now(), pg_current_xact_id_if_assigned()")
                    found["start"], found["xid"] = cursor.fetchone()
                started.set()
                assert go.wait(30)
                found["event"] = event_record(merchant_id="mer_horizon", type="payment.succeeded", data={"id": "p"})
                stamped.set()
                assert release.wait(30)
        except BaseException as exc:  # noqa: BLE001 (surfaced to the test)
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert started.wait(30)
        horizon = committed_before()  # the writer holds no id: not counted
        go.set()
        assert stamped.wait(30)
        held = committed_before()  # now it does: the horizon is at most its start
    finally:
        release.set()
        thread.join(30)
    assert errors == []
    assert found["xid"] is None
    assert found["start"] < horizon  # (a stamp at the transaction's start would be below it)
    assert found["event"].created_at > horizon
    assert held <= found["start"] < found["event"].created_at
