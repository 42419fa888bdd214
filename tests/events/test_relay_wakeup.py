"""The outbox relay's wake-up (payera/events/wakeup.py): one Redis LPUSH after commit instead of a
Celery publish; a listener in the worker publishes one relay message per batch; the sweep relays
whatever a lost wake-up missed, and nothing is relayed twice."""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest
from django.db import transaction

from payera.celery import app
from payera.events import dispatch, wakeup
from payera.events.models import DeliveryStatus, Event, WebhookDelivery
from payera.events.services import event_record, event_relay_pending, webhook_endpoint_create
from payera.events.tasks import event_relay_batch_task
from tests.events.helpers import record, wait_until
from tests.events.worker import broker_unreachable, route_to_queue

M = "mer_wakeup_test"
URL = "http://127.0.0.1:9/hook"


_broker = wakeup.broker_url(app)  # as configured, before any test points it elsewhere


def _redis():
    import redis

    return redis.Redis.from_url(_broker)


@pytest.fixture
def own_queue():
    """A wake-up list of this test's own (named after the default queue), removed at the end."""
    if not wakeup.enabled(app):
        pytest.skip("wake-ups need a Redis broker (the served setup)")
    saved = app.conf.task_default_queue
    queue = f"payera-test-wakeup-{uuid.uuid4().hex[:10]}"
    route_to_queue(app, queue)
    try:
        yield wakeup.KEY_PREFIX + queue
    finally:
        route_to_queue(app, saved)
        _redis().delete(wakeup.KEY_PREFIX + queue)


@pytest.fixture
def no_celery_publish(monkeypatch) -> list:
    """Any Celery publish of this process is recorded and refused."""
    calls: list = []

    def refuse(task, *args, countdown=None):
        calls.append((task.name.rsplit(".", 1)[-1], args))
        return False

    monkeypatch.setattr(dispatch, "publish", refuse)
    return calls


@pytest.mark.django_db(transaction=True)
def test_a_committed_event_is_one_wakeup_push_and_no_celery_publish(own_queue, no_celery_publish):
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        event_record(merchant_id=M, type="payment.failed", data={"id": "pay_rolled_back"})
        1 / 0  # noqa: B018 - rolled back: no wake-up
    assert _redis().llen(own_queue) == 0

    from payera.events.services import event_record_many

    with transaction.atomic():
        a, b = event_record_many(merchant_id=M, types=["payment.captured", "payment.succeeded"], data={"id": "p"})
        assert _redis().llen(own_queue) == 0  # nothing before the commit
    assert [i.decode() for i in _redis().lrange(own_queue, 0, -1)] == [b.id, a.id]  # LPUSH: newest first
    assert no_celery_publish == []


@pytest.mark.django_db(transaction=True)
def test_wakeups_off_or_without_redis_publish_the_relay_task_as_before(own_queue, no_celery_publish, settings,
                                                                        monkeypatch):
    redis_client = _redis()
    settings.EVENTS_RELAY_WAKEUP = False
    first = record(M)
    settings.EVENTS_RELAY_WAKEUP = True
    app.conf.task_always_eager = True
    try:
        second = record(M)
    finally:
        app.conf.task_always_eager = False
    monkeypatch.setattr(wakeup, "broker_url", lambda app: "filesystem://")
    third = record(M)
    assert no_celery_publish == [("event_relay_task", (e.id,)) for e in (first, second, third)]
    assert redis_client.llen(own_queue) == 0


@pytest.mark.django_db(transaction=True)
def test_a_lost_wakeup_is_relayed_by_the_sweep_once(own_queue, no_celery_publish, caplog):
    webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["*"])
    with broker_unreachable(app), caplog.at_level(logging.WARNING, logger="payera.events"):
        event = record(M)  # commits; the wake-up cannot reach Redis, quietly and quickly
    assert "could not wake the relay" in caplog.text
    assert no_celery_publish == []  # no second attempt through Celery (same Redis)
    event.refresh_from_db()
    assert event.relayed_at is None
    assert event_relay_pending(min_age_seconds=0) == 1
    # A late or repeated wake-up of the same event changes nothing.
    assert event_relay_batch_task.run(event.id, event.id) == 0
    assert event_relay_pending(min_age_seconds=0) == 0
    assert WebhookDelivery.objects.filter(event=event).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_list_is_trimmed_when_no_worker_pops_it(own_queue, monkeypatch):
    monkeypatch.setattr(wakeup, "MAX_PENDING", 3)
    ids = [record(M).id for _ in range(5)]
    assert [i.decode() for i in _redis().lrange(own_queue, 0, -1)] == ids[::-1][:3]


def test_the_listener_takes_what_is_waiting_oldest_first_once_each_and_publishes_one_message(own_queue,
                                                                                              monkeypatch):
    published: list = []
    monkeypatch.setattr(dispatch, "publish", lambda task, *args, countdown=None: published.append((task.name, args)))
    for batch in (["evt_1", "evt_2"], ["evt_1"], ["evt_3"]):
        assert wakeup.push(app, batch) is True
    listener = wakeup.RelayWakeupListener(app, block_seconds=0.2)
    listener.start()
    try:
        wait_until(lambda: published, timeout=5)
    finally:
        listener.stop(timeout=3)
    assert not listener.is_alive()
    assert published == [(event_relay_batch_task.name, ("evt_1", "evt_2", "evt_3"))]
    assert _redis().llen(own_queue) == 0


def test_the_listener_survives_redis_going_away(own_queue, monkeypatch):
    published: list = []
    monkeypatch.setattr(dispatch, "publish", lambda task, *args, countdown=None: published.append(args))
    listener = wakeup.RelayWakeupListener(app, block_seconds=0.2)
    good = listener._listen_client
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] <= 2:
            import redis

            return redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        return good()

    monkeypatch.setattr(listener, "_listen_client", flaky)
    listener.start()
    try:
        wakeup.push(app, ["evt_after_outage"])
        wait_until(lambda: published, timeout=10)
    finally:
        listener.stop(timeout=3)
    assert published == [("evt_after_outage",)] and calls["n"] >= 3


# --- with a real Celery worker ------------------------------------------------------------------


def _delivered(event_id: str) -> WebhookDelivery | None:
    return WebhookDelivery.objects.filter(event_id=event_id, status=DeliveryStatus.SUCCEEDED).first()


@pytest.mark.django_db(transaction=True)
@pytest.mark.xdist_group("events_worker")
def test_a_real_worker_relays_a_woken_event_promptly_without_any_publish_here(celery_worker, receivers,
                                                                              no_celery_publish):
    rx = receivers()
    webhook_endpoint_create(merchant_id=M, url=rx.url, enabled_events=["*"])
    started = time.monotonic()
    event = record(M, "payment.succeeded", {"id": "pay_woken", "object": "payment"})
    [got] = rx.wait_for(1, timeout=10)
    assert time.monotonic() - started < 5  # the worker has no beat: no sweep, the wake-up did it
    assert json.loads(got.body)["id"] == event.id
    wait_until(lambda: _delivered(event.id))
    assert no_celery_publish == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.xdist_group("events_worker")
def test_a_real_worker_woken_three_times_and_swept_delivers_once(celery_worker, receivers):
    rx = receivers()
    webhook_endpoint_create(merchant_id=M, url=rx.url, enabled_events=["*"])
    with broker_unreachable(app):
        event = record(M)  # the wake-up is lost
    assert Event.objects.get(pk=event.id).relayed_at is None
    for _ in range(3):  # late duplicates of it, and the sweep, all at once
        wakeup.push(app, [event.id])
    assert event_relay_pending(min_age_seconds=0) in (0, 1)
    [got] = rx.wait_for(1, timeout=10)
    wait_until(lambda: _delivered(event.id))
    time.sleep(1.0)  # room for a second delivery: there must be none
    assert len(rx.requests) == 1 and json.loads(got.body)["id"] == event.id
    assert WebhookDelivery.objects.filter(event=event).count() == 1
