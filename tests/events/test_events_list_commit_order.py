"""`GET /v1/events` in an order no later commit can slip into (session 17, w17b).

What was wrong: the list was ordered by `created_at` then id, newest first, and showed every
committed event. An event's `created_at` is stamped when it is recorded, inside the transaction of
the change it records, which commits later (possibly much later): an event recorded in a
transaction still open when another event committed got the older stamp, and so appeared *below*
events a merchant had already listed. A merchant that syncs by polling (walks the list newest
first and stops at the newest event it already has, what `starting_after` cursors are for) never
saw it: a lost event, the webhook it stands in for never acted on. Real threads, real PostgreSQL:
one event recorded in a transaction held open while another commits and the merchant lists.

Now `created_at` is the database's clock, read after the recording transaction holds a
transaction id, and a first page lists only events stamped before
`payera.core.horizon.committed_before()` (nothing can still commit below that instant), so an
event that shows up later is always above every event already shown."""

from __future__ import annotations

import time

import pytest
from django.db import connection, transaction

from payera.events.services import event_record
from tests.helpers import held_open, walk_list

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent commits: PostgreSQL"),
]


def _record(merchant_id: str, n: int) -> str:
    with transaction.atomic():
        return event_record(merchant_id=merchant_id, type="payment.succeeded", data={"id": f"pay_{n}", "n": n}).id


def _walk(client, *, stop_at: set[str] | None = None, limit: int = 1) -> list[dict]:
    return walk_list(client, "/v1/events", stop_at=stop_at, limit=limit)


def test_an_event_committed_late_is_never_listed_below_events_already_listed(make_merchant_client):
    merchant, client = make_merchant_client()
    _record(merchant.id, 1)
    with held_open(  # event 2 recorded (stamped) now, committed later
        lambda: event_record(merchant_id=merchant.id, type="payment.succeeded", data={"id": "pay_2", "n": 2})
    ):
        time.sleep(0.01)
        _record(merchant.id, 3)  # committed while event 2 is still open
        first_sync = _walk(client)

    # the merchant polls again, down to the newest event it already has
    known = {row["id"] for row in first_sync}
    second_sync = _walk(client, stop_at=known)
    synced = sorted(row["data"]["object"]["n"] for row in first_sync + second_sync)
    assert synced == [1, 2, 3], (first_sync, second_sync)

    # once everything has committed the whole list is there, newest (by stamp) first, each once
    full = _walk(client, limit=100)
    assert [row["data"]["object"]["n"] for row in full] == [3, 2, 1]


def test_a_payment_story_keeps_its_events_when_the_app_clock_is_ahead_of_the_database():
    """An event's `created_at` is now the database's clock, while a payment's `created_at` (the
    `since` of the back office's payment story) is the application server's: with the app's clock
    a little ahead, the event recorded with the payment fell before `since` and vanished from the
    staff's timeline. `event_list_for_objects` scans with a margin."""
    from datetime import timedelta

    from payera.events.selectors import event_list_for_objects

    with transaction.atomic():
        event = event_record(merchant_id="mer_story", type="payment.succeeded", data={"id": "pay_story"})
    app_clock_ahead = event.created_at + timedelta(seconds=2)
    found = event_list_for_objects(merchant_id="mer_story", object_ids=["pay_story"], since=app_clock_ahead)
    assert [e.id for e in found] == [event.id]
