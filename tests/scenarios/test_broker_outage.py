"""The broker stopped while payments are made (issue 6): every payment still answers at once,
its events are committed in the outbox, and once the broker is back the real worker's embedded
beat sweeps them out — every event delivered to the merchant, none lost.

The broker is a redis-server of this test's own on a free port (stopping the machine's Redis would
stop every other test); the worker subprocess runs with `-B`, so the real beat schedule drives the
relay sweep. Skipped on the embedded run (it needs PostgreSQL and Redis)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import redis
from django.db import connection

from payera.celery import app
from payera.events.models import DeliveryStatus, Event, WebhookDelivery
from payera.events.services import webhook_endpoint_create
from tests.events.conftest import receivers  # noqa: F401 - live merchant endpoints
from tests.events.helpers import wait_until
from tests.events.worker import route_to_queue, start_worker
from tests.helpers import free_port

pytestmark = [pytest.mark.scenario, pytest.mark.xdist_group("events_worker")]


class Broker:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: self._ping(), timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
        assert not self._ping()

    def _ping(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.exceptions.ConnectionError:
            return False


@pytest.fixture
def broker_and_worker(env):
    if connection.vendor != "postgresql" or shutil.which("redis-server") is None:
        pytest.skip("needs PostgreSQL and a redis-server binary (the served setup)")
    broker = Broker(free_port())
    broker.start()
    sandboxes = env.sandboxes
    worker = start_worker(settings_dict=dict(connection.settings_dict), beat=True, extra_env={
        "CELERY_BROKER_URL": broker.url,
        "SANDBOX_ALPHA_URL": sandboxes["alpha"].url, "SANDBOX_BETA_URL": sandboxes["beta"].url,
        "SANDBOX_DATA_DIR": str(sandboxes["alpha"].data_dir),
    })
    saved = (app.conf.broker_url, app.conf.broker_write_url, app.conf.task_default_queue)

    def reset_pools() -> None:
        app._pool = None
        app.amqp._producer_pool = None

    app.conf.broker_url = app.conf.broker_write_url = broker.url  # this process publishes there too
    route_to_queue(app, worker.queue)
    reset_pools()
    try:
        yield broker, worker
    finally:
        worker.stop()
        broker.stop() if broker.proc else None
        app.conf.broker_url, app.conf.broker_write_url = saved[0], saved[1]
        route_to_queue(app, saved[2])
        reset_pools()


def _delivered(event_ids: set[str], endpoints: int) -> bool:
    done = WebhookDelivery.objects.filter(event_id__in=event_ids, status=DeliveryStatus.SUCCEEDED)
    return done.count() == len(event_ids) * endpoints


def test_broker_stopped_while_payments_are_made_every_event_is_delivered_once_it_is_back(
    env, broker_and_worker, receivers,  # noqa: F811
):
    broker, worker = broker_and_worker
    env.merchant.connectors = ["alpha"]
    env.merchant.save(update_fields=["connectors"])
    rx = receivers()
    slow = receivers(delay=3.0)  # its deliveries are still running (unacknowledged) when the broker stops
    for receiver in (rx, slow):
        webhook_endpoint_create(merchant_id=env.merchant.id, url=receiver.url, enabled_events=["*"])

    # the pipeline works with the broker up
    first = env.pay()
    assert first["status"] == "succeeded"
    rx.wait_for(1, timeout=30)
    wait_until(lambda: slow.active, timeout=30)  # a delivery task is in flight, its message not yet acked

    broker.stop()
    made = []
    for _ in range(5):
        started = time.monotonic()
        p = env.pay()
        assert p["status"] == "succeeded"  # the merchant is answered; the outbox keeps the events
        assert time.monotonic() - started < 10
        made.append(p["id"])
    refunded = env.post("/v1/refunds", {"payment": made[0], "amount": 300}, expect=201)
    assert refunded["status"] == "succeeded"

    outage_events = set(Event.objects.filter(merchant_id=env.merchant.id, data__object__id__in=made + [refunded["id"]])
                        .values_list("id", flat=True))
    assert len(outage_events) >= 6  # payment.succeeded x5, refund.succeeded (and any others)
    time.sleep(1.0)
    assert not Event.objects.filter(pk__in=outage_events, relayed_at__isnull=False).exists()
    delivered_before = {json.loads(r.body)["id"] for r in rx.requests}
    assert not (outage_events & delivered_before)

    broker.start()  # same port: the worker reconnects; its beat's relay sweep finds the backlog
    try:
        wait_until(lambda: _delivered(outage_events, endpoints=2), timeout=120, interval=0.5)
    except AssertionError:
        notable = [line for line in worker.log().splitlines() if any(w in line for w in ("ERROR", "CRITICAL"))]
        raise AssertionError("\n".join(notable[-40:])) from None
    assert worker.popen.poll() is None, "the worker died with the broker (payera/core/broker.py)"
    received = [json.loads(r.body)["id"] for r in rx.requests]
    assert outage_events <= set(received)  # every event of the outage reached the merchant
    for event_id in outage_events:
        ok = WebhookDelivery.objects.filter(event_id=event_id, status=DeliveryStatus.SUCCEEDED).count()
        assert ok == 2  # one successful delivery per endpoint
