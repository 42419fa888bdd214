"""Two deliveries of one PSP webhook at the same time: each is answered 200, stored once, applied once.

What was wrong: the inbox (`payments.services.webhooks._inbox_store`) inserted the row and, on the
unique index's refusal, read the other delivery's row in the same transaction. PostgreSQL makes the
second insert wait for the first delivery's transaction and refuses it only once that one committed,
so under READ COMMITTED (Django's assumption) the read sees the row. Under the database's
REPEATABLE READ (a server, database or role `default_transaction_isolation`, which Django leaves
alone unless OPTIONS names a level) the read runs in the snapshot taken before the other commit and
found nothing: `PspWebhook.DoesNotExist`, a 500 with a traceback to the PSP for a repeat it had
already delivered (SERIALIZABLE: a serialization failure, 500 too). Now the repeat's row is read in
a transaction of its own after the refused one, which sees every commit before it; a row that is
not there even then (gone meanwhile) is a retryable 503, never a lost webhook.

The settings pin READ COMMITTED since (docs/decisions/read-committed.md); `default_isolation` takes
the pin off for its test, so the inbox is still shown right under each server default.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid

import pytest
from django.db import IntegrityError, connection
from django.test import Client

from payments.models import PspWebhook

pytestmark = pytest.mark.django_db(transaction=True)


def _delivery(secret: str) -> tuple[bytes, str, str]:
    event_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps({
        "id": event_id, "type": "authorization.updated", "created": "2026-11-23T00:00:00Z",
        "data": {"id": "auth_X", "merchant_reference": "att_unknown", "status": "authorized", "amount": 1000,
                 "currency": "EUR"},
    }).encode()  # fmt: skip
    return body, hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(), event_id


def _post(body: bytes, signature: str):
    return Client(raise_request_exception=False).post(
        "/webhooks/psp/alpha/", data=body, content_type="application/json", headers={"X-Alpha-Signature": signature}
    )


@pytest.fixture
def default_isolation(monkeypatch):
    """`set(level)`: the test database's default transaction isolation for new connections (as a
    server, database or role setting gives it in a deployment), with the settings' READ COMMITTED
    pin off for them (every thread's connection reads this one settings dict); reset afterwards."""
    name = connection.settings_dict["NAME"]
    monkeypatch.delitem(connection.settings_dict["OPTIONS"], "isolation_level", raising=False)

    def set_level(level: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER DATABASE \"{name}\" SET default_transaction_isolation TO '{level}'")

    yield set_level
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{name}" RESET default_transaction_isolation')


@pytest.fixture
def enqueued(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr("payments.services.webhooks.enqueue", lambda task, row_id: seen.append(row_id))
    return seen


def _waiting_on_a_lock(timeout: float = 10) -> None:
    """Until another session of this database waits on a lock (the second insert on the first's row)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("the second delivery never waited for the first")


def _race(monkeypatch, body: bytes, signature: str, *, first_fails: bool = False) -> tuple[object, object, str]:
    """The first delivery inserts its row and holds its transaction open; the second arrives, its
    insert waits on the first's row; then the first commits (or fails and rolls back). Also the
    isolation level the first delivery's transaction ran at."""
    inserted, release = threading.Event(), threading.Event()
    real_create = PspWebhook.objects.create
    levels: list[str] = []

    def create(**fields):
        row = real_create(**fields)
        if threading.current_thread() is first:
            with connection.cursor() as cursor:
                cursor.execute("SHOW transaction_isolation")
                levels.append(cursor.fetchone()[0])
            inserted.set()
            release.wait(20)
            if first_fails:
                raise RuntimeError("the first delivery's worker died before its commit")
        return row

    monkeypatch.setattr(PspWebhook.objects, "create", create)
    answers: dict[str, object] = {}

    def deliver(name: str) -> None:
        try:
            answers[name] = _post(body, signature)
        finally:
            connection.close()

    one = threading.Thread(target=deliver, args=("first",))
    first = one
    one.start()
    assert inserted.wait(20)
    two = threading.Thread(target=deliver, args=("second",))
    two.start()
    try:
        _waiting_on_a_lock()
    finally:
        release.set()
        one.join(30)
        two.join(30)
    return answers["first"], answers["second"], levels[0]


@pytest.mark.parametrize("level", ["read committed", "repeatable read", "serializable"])
def test_a_repeat_arriving_while_the_first_delivery_commits_is_answered_200_and_stored_once(
    psp_settings, monkeypatch, enqueued, default_isolation, level
):
    default_isolation(level)
    body, signature, event_id = _delivery(psp_settings["alpha"].webhook_secret)
    first, second, ran_at = _race(monkeypatch, body, signature)
    assert ran_at == level
    assert (first.status_code, second.status_code) == (200, 200), second.content
    assert first.json() == second.json() == {"received": True, "id": event_id}
    [row] = PspWebhook.objects.filter(connector="alpha", event_id=event_id)
    assert enqueued == [str(row.pk)]  # applied once: the repeat queues nothing


@pytest.mark.parametrize("level", ["read committed", "repeatable read"])
def test_a_repeat_arriving_while_the_first_delivery_fails_is_stored_by_the_repeat(
    psp_settings, monkeypatch, enqueued, default_isolation, level
):
    """No lost webhook: the first delivery's transaction rolls back, the waiting repeat stores it."""
    default_isolation(level)
    body, signature, event_id = _delivery(psp_settings["alpha"].webhook_secret)
    first, second, ran_at = _race(monkeypatch, body, signature, first_fails=True)
    assert ran_at == level
    assert (first.status_code, second.status_code) == (500, 200)
    [row] = PspWebhook.objects.filter(connector="alpha", event_id=event_id)
    assert enqueued == [str(row.pk)]


def test_a_refused_insert_whose_row_is_gone_is_a_retryable_503(psp_settings, monkeypatch, enqueued):
    """The unique index refused the insert, yet the row is not there when read (deleted since):
    the PSP is asked to deliver again (503, Retry-After), not answered 500 with a traceback."""

    def refused(**fields):
        raise IntegrityError('duplicate key value violates unique constraint "psp_webhook_event_uniq"')

    monkeypatch.setattr(PspWebhook.objects, "create", refused)
    body, signature, _ = _delivery(psp_settings["alpha"].webhook_secret)
    answer = _post(body, signature)
    assert answer.status_code == 503
    assert answer["Retry-After"]
    assert answer.json()["error"]["type"] == "api_error"
    assert enqueued == []
