"""/metrics: protected, django-prometheus' request metrics and our platform gauges."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from payera.core import metrics
from payera.events.models import DeliveryStatus, Event, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def scrape(client: Client, **extra) -> tuple[int, str]:
    response = client.get("/metrics", **extra)
    return response.status_code, response.content.decode()


def test_metrics_are_not_public_without_a_token(settings):
    settings.METRICS_TOKEN = ""
    status, body = scrape(Client(REMOTE_ADDR="203.0.113.7"))
    assert status == 404
    assert "payera_" not in body and '"error"' in body


def test_loopback_may_scrape_when_no_token_is_set(settings):
    settings.METRICS_TOKEN = ""
    status, body = scrape(Client(REMOTE_ADDR="127.0.0.1"))
    assert status == 200
    assert "payera_outbox_lag_seconds" in body


def test_with_a_token_only_the_token_scrapes(settings):
    settings.METRICS_TOKEN = "metrics-token-123"
    assert scrape(Client(REMOTE_ADDR="127.0.0.1"))[0] == 404  # loopback alone no longer enough
    assert scrape(Client(REMOTE_ADDR="127.0.0.1"), HTTP_AUTHORIZATION="Bearer wrong")[0] == 404
    status, body = scrape(Client(REMOTE_ADDR="203.0.113.7"), HTTP_AUTHORIZATION="Bearer metrics-token-123")
    assert status == 200


def test_request_metrics_from_django_prometheus(settings, merchant_client):
    settings.METRICS_TOKEN = ""
    merchant_client.get("/v1/customers")
    status, body = scrape(Client(REMOTE_ADDR="127.0.0.1"))
    assert "django_http_requests_total_by_view_transport_method_total" in body
    assert "django_http_requests_latency_seconds_by_view_method_bucket" in body
    assert "django_http_responses_total_by_status_total" in body


def test_domain_counters_are_defined_and_exported(settings):
    settings.METRICS_TOKEN = ""
    metrics.AUTHORIZATIONS.labels(connector="alpha", result="declined", decline_code="insufficient_funds").inc()
    metrics.RECONCILIATION_MATCH_RATIO.labels(psp="alpha").set(0.99)
    _, body = scrape(Client(REMOTE_ADDR="127.0.0.1"))
    assert 'payera_authorizations_total{connector="alpha",decline_code="insufficient_funds",result="declined"}' in body
    assert 'payera_reconciliation_match_ratio{psp="alpha"} 0.99' in body
    for name in ("payera_unknown_outcomes_total", "payera_psp_errors_total", "payera_ledger_verify_failures"):
        assert f"# HELP {name}" in body


def _gauge(body: str, name: str) -> float:
    line = next(line for line in body.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def test_outbox_lag_backlog_and_dead_letters_come_from_the_database(settings, merchant):
    settings.METRICS_TOKEN = ""
    now = timezone.now()
    fields = {"merchant_id": merchant.id, "type": "payment.succeeded", "api_version": "x", "data": {}}
    old = Event.objects.create(**fields, created_at=now - timedelta(seconds=90))
    Event.objects.create(**fields, created_at=now - timedelta(seconds=5), relayed_at=now)
    for status in (DeliveryStatus.PENDING, DeliveryStatus.FAILED, DeliveryStatus.DEAD, DeliveryStatus.SUCCEEDED):
        endpoint = WebhookEndpoint.objects.create(
            merchant_id=merchant.id, url="https://example.com/h", secret_ciphertext="x", created_at=now, updated_at=now
        )
        WebhookDelivery.objects.create(
            event=old,
            endpoint=endpoint,
            merchant_id=merchant.id,
            status=status,
            window_started_at=now,
            created_at=now - timedelta(seconds=30),
        )
    _, body = scrape(Client(REMOTE_ADDR="127.0.0.1"))
    assert _gauge(body, "payera_outbox_unrelayed_events") == 1
    assert 89 <= _gauge(body, "payera_outbox_lag_seconds") < 120
    assert _gauge(body, "payera_webhook_backlog") == 2
    assert _gauge(body, "payera_webhook_dead_letters") == 1
    assert _gauge(body, "payera_webhook_oldest_open_seconds") >= 29


def test_multiprocess_mode_sums_the_workers(tmp_path, monkeypatch, settings):
    # Under gunicorn with PROMETHEUS_MULTIPROC_DIR the view reads every worker's files.
    settings.METRICS_TOKEN = ""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    status, body = scrape(Client(REMOTE_ADDR="127.0.0.1"))
    assert status == 200
    assert "payera_webhook_backlog" in body
