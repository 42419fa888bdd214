"""End to end with a real Celery worker, Redis, PostgreSQL and live local HTTP endpoints."""

from __future__ import annotations

import json
import time

import pytest
from django.db import transaction

from payera.celery import app
from payera.events.models import DeliveryStatus, Event, WebhookDelivery
from payera.events.services import event_record, webhook_endpoint_create
from payera.events.tasks import event_relay_sweep_task
from tests.events.helpers import docs_verifier, record, wait_until
from tests.events.worker import broker_unreachable

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("events_worker")]

M = "mer_worker_test"


class Boom(Exception):
    pass


def _delivery_final(event_id: str) -> WebhookDelivery | None:
    return WebhookDelivery.objects.filter(event_id=event_id, status=DeliveryStatus.SUCCEEDED).first()


def test_rolled_back_event_is_never_sent_and_committed_one_is_delivered(celery_worker, receivers):
    rx = receivers()
    created = webhook_endpoint_create(merchant_id=M, url=rx.url, enabled_events=["*"])
    with pytest.raises(Boom), transaction.atomic():
        event_record(merchant_id=M, type="payment.failed", data={"id": "pay_rolled_back"})
        raise Boom
    event = record(M, "payment.succeeded", {"id": "pay_ok", "object": "payment", "amount": 1000})

    [got] = rx.wait_for(1)
    wait_until(lambda: _delivery_final(event.id))
    time.sleep(0.5)  # room for anything else to arrive: it must not
    assert len(rx.requests) == 1
    assert Event.objects.filter(merchant_id=M).count() == 1
    body = json.loads(got.body)
    assert body["id"] == event.id and body["type"] == "payment.succeeded"
    assert body["data"]["object"]["id"] == "pay_ok"
    assert docs_verifier()(got.body, got.headers["Payera-Signature"], created.secret)


def test_event_committed_while_broker_down_is_relayed_by_the_sweep(celery_worker, receivers):
    rx = receivers()
    webhook_endpoint_create(merchant_id=M, url=rx.url, enabled_events=["payment.captured"])
    with broker_unreachable(app):
        event = record(M, "payment.captured")  # commits; publishing the relay fails, quietly
    time.sleep(0.5)
    event.refresh_from_db()
    assert event.relayed_at is None and rx.requests == []

    event_relay_sweep_task.delay()  # what beat does every few seconds, now that the broker is back
    [got] = rx.wait_for(1)
    assert json.loads(got.body)["id"] == event.id
    wait_until(lambda: _delivery_final(event.id))


def test_endpoint_failing_three_times_then_succeeding_gets_one_success_and_four_attempts(celery_worker, receivers):
    rx = receivers(statuses=[500, 503, 500])
    created = webhook_endpoint_create(merchant_id=M, url=rx.url, enabled_events=["refund.*"])
    event = record(M, "refund.succeeded", {"id": "re_1", "object": "refund"})

    requests = rx.wait_for(4)
    delivery = wait_until(lambda: _delivery_final(event.id))
    time.sleep(0.8)  # a fifth request would be a duplicate success
    assert [r.status for r in rx.requests] == [500, 503, 500, 200]
    attempts = list(delivery.attempts.order_by("number"))
    assert [(a.number, a.status_code, a.succeeded) for a in attempts] == [
        (1, 500, False), (2, 503, False), (3, 500, False), (4, 200, True),
    ]  # fmt: skip
    assert all(a.latency_ms is not None for a in attempts) and attempts[-1].response_body == '{"received": true}'
    assert delivery.attempt_count == 4
    verify = docs_verifier()
    assert all(verify(r.body, r.headers["Payera-Signature"], created.secret) for r in requests)
    assert [r.headers["Payera-Delivery-Attempt"] for r in requests] == ["1", "2", "3", "4"]


def test_slow_endpoint_is_capped_and_does_not_starve_another_endpoint(celery_worker, receivers):
    slow = receivers(delay=2.0)  # a fast delivery stuck behind a slow one would wait >= 2 s
    fast = receivers()
    webhook_endpoint_create(merchant_id="mer_slow", url=slow.url, enabled_events=["*"])
    webhook_endpoint_create(merchant_id="mer_fast", url=fast.url, enabled_events=["*"])
    for i in range(10):  # more than the worker's 8 threads
        record("mer_slow", data={"id": f"pay_{i}"})
    time.sleep(0.3)
    t0 = time.monotonic()
    record("mer_fast")
    [got] = fast.wait_for(1, timeout=5)
    # well under one slow delivery (2 s), with room for a loaded machine
    assert got.at - t0 < 1.5, "the fast endpoint waited behind the slow one"
    assert len(slow.requests) < 10
    slow.wait_for(10, timeout=40)
    assert slow.max_active <= 2  # WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT in the worker
