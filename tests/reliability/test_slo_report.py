"""`manage.py slo_report`: webhook SLO from stored deliveries, API SLOs from Prometheus."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import StringIO
from urllib.parse import parse_qs, urlparse

import pytest
from django.core.management import call_command
from django.utils import timezone

from payera.core.slo import quantile
from payera.events.models import DeliveryAttempt, DeliveryStatus, Event, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def run(*args: str) -> dict:
    out = StringIO()
    call_command("slo_report", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def make_delivery(merchant, *, created, attempts: list[tuple[float, bool, int]], status=DeliveryStatus.SUCCEEDED):
    """attempts: (seconds after the event, succeeded, latency ms)."""
    event = Event.objects.create(
        merchant_id=merchant.id,
        type="payment.succeeded",
        api_version="x",
        data={},
        created_at=created,
        relayed_at=created,
    )
    endpoint = WebhookEndpoint.objects.create(
        merchant_id=merchant.id,
        url="https://example.com/h",
        secret_ciphertext="x",
        created_at=created,
        updated_at=created,
    )
    delivery = WebhookDelivery.objects.create(
        event=event,
        endpoint=endpoint,
        merchant_id=merchant.id,
        status=status,
        window_started_at=created,
        created_at=created,
    )
    for number, (after, ok, latency) in enumerate(attempts, start=1):
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=created + timedelta(seconds=after),
            succeeded=ok,
            status_code=200 if ok else 500,
            latency_ms=latency,
        )
    return delivery


def test_quantile_is_nearest_rank():
    assert quantile([], 0.99) is None
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert quantile([float(i) for i in range(1, 101)], 0.99) == 99.0


def test_webhook_slo_from_stored_attempts(merchant):
    now = timezone.now()
    t0 = now - timedelta(hours=2)
    for i in range(98):
        make_delivery(merchant, created=t0 + timedelta(seconds=i), attempts=[(1, True, 200)])
    # One delivered late (after a retry at 90 s), one never tried (our fault).
    make_delivery(merchant, created=t0, attempts=[(1, False, 100), (90, True, 100)])
    make_delivery(merchant, created=t0, attempts=[], status=DeliveryStatus.PENDING)
    # The merchant's endpoint failing: excluded. A too-recent untried one: excluded.
    make_delivery(merchant, created=t0, attempts=[(1, False, 100), (30, False, 100)], status=DeliveryStatus.FAILED)
    make_delivery(merchant, created=now - timedelta(seconds=5), attempts=[], status=DeliveryStatus.PENDING)
    # Outside the period.
    make_delivery(merchant, created=now - timedelta(days=3), attempts=[(500, True, 1)])

    report = run("--since", (now - timedelta(days=1)).isoformat(), "--until", (now + timedelta(seconds=1)).isoformat())
    w = report["webhooks"]
    assert w["deliveries"] == 100
    assert w["delivered_within_target"] == 98
    assert w["never_tried_late"] == 1
    assert w["excluded_merchant_endpoint_failing"] == 1
    assert w["excluded_too_recent"] == 1
    assert w["p50_seconds"] == pytest.approx(1.2)
    assert w["p99_seconds"] == pytest.approx(90.1)  # 99th of 100: the late one
    assert w["met"] is False
    assert report["api"]["available"] is False


def test_webhook_slo_met_and_empty_period(merchant):
    now = timezone.now()
    make_delivery(merchant, created=now - timedelta(minutes=10), attempts=[(2, True, 500)])
    assert run("--since", (now - timedelta(hours=1)).isoformat())["webhooks"]["met"] is True
    empty = run("--since", "2020-01-01", "--until", "2020-01-02")["webhooks"]
    assert empty["deliveries"] == 0 and empty["met"] is None


class FakePrometheus(BaseHTTPRequestHandler):
    answers = {"requests": "200000", "errors_5xx": "50", "p99_seconds": "0.31"}
    seen: list[str] = []

    def do_GET(self):  # noqa: N802
        query = parse_qs(urlparse(self.path).query)["query"][0]
        FakePrometheus.seen.append(query)
        if query.startswith("histogram_quantile"):
            value = self.answers["p99_seconds"]
        elif 'status=~"5.."' in query:
            value = self.answers["errors_5xx"]
        else:
            value = self.answers["requests"]
        body = json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, value]}]}}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def prometheus():
    server = HTTPServer(("127.0.0.1", 0), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakePrometheus.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_api_slo_from_prometheus(prometheus):
    report = run("--since", "2026-11-01", "--until", "2026-11-02", "--prometheus", prometheus, "--views", "payment.*")
    api = report["api"]
    assert api["available"] is True
    assert api["requests"] == 200000 and api["errors_5xx"] == 50
    assert api["availability"] == pytest.approx(0.99975)
    assert api["availability_met"] is True
    assert api["p99_seconds"] == pytest.approx(0.31) and api["p99_met"] is True
    assert all('view=~"payment.*"' in q and "[86400s]" in q for q in FakePrometheus.seen)


def test_api_slo_reports_an_unreachable_prometheus():
    api = run("--prometheus", "http://127.0.0.1:9")["api"]
    assert api["available"] is False and "failed" in api["reason"]


def test_bad_period_is_refused():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        run("--since", "2026-11-02", "--until", "2026-11-01")
    with pytest.raises(CommandError):
        run("--since", "yesterday")


def test_human_output(merchant):
    out = StringIO()
    call_command("slo_report", stdout=out)
    assert "webhooks:" in out.getvalue() and "api: not computed" in out.getvalue()
