"""Prometheus metrics: our own, beside django-prometheus' request/latency metrics.

Two kinds (docs/slo.md, "Metrics"):
- **Event counters and gauges** defined here for any app to update where the thing happens
  (`AUTHORIZATIONS.labels(connector="alpha", result="declined", decline_code="insufficient_funds").inc()`).
  Under gunicorn with several workers set `PROMETHEUS_MULTIPROC_DIR` (an empty directory per
  host, wiped at start): prometheus_client then keeps each worker's values in files and the
  view below sums them (multiprocess mode). Without it (one process, `make run`) the default
  registry is used.
- **State gauges derived from the database at scrape time** (`PlatformCollector`): outbox lag,
  webhook backlog, dead letters. Every worker computes the same answer from PostgreSQL, so they
  need no multiprocess bookkeeping and are right whichever worker is scraped.

`/metrics` is not public: it answers only with `Authorization: Bearer <METRICS_TOKEN>` when that
setting is set, and otherwise only to loopback clients (a sidecar/agent on the host).
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily

from payera.core.api import error_body

# --- Defined now for the domain apps to use (issue 10) ---------------------------------
AUTHORIZATIONS = Counter(
    "payera_authorizations_total",
    "Authorization attempts by connector and result (approved, declined, soft_declined, "
    "requires_action, error, unknown), with the normalized decline code (empty if none).",
    ["connector", "result", "decline_code"],
)
UNKNOWN_OUTCOMES = Counter(
    "payera_unknown_outcomes_total",
    "PSP calls whose outcome is unknown (timeout, crash between call and record): recovery must resolve them.",
    ["connector"],
)
UNKNOWN_OUTCOMES_RESOLVED = Counter(
    "payera_unknown_outcomes_resolved_total",
    "Unknown outcomes resolved by recovery, by what the PSP said.",
    ["connector", "result"],
)
PSP_ERRORS = Counter(
    "payera_psp_errors_total",
    "PSP transport errors (unavailable, timeout, protocol) by connector.",
    ["connector", "kind"],
)
RECONCILIATION_ROWS = Counter(
    "payera_reconciliation_rows_total",
    "Settlement-report rows reconciled, by PSP and result (matched or the discrepancy kind).",
    ["psp", "result"],
)
RECONCILIATION_MATCH_RATIO = Gauge(
    "payera_reconciliation_match_ratio",
    "Matched rows / all rows of the last reconciled report, per PSP.",
    ["psp"],
    multiprocess_mode="mostrecent",
)
LEDGER_VERIFY_FAILURES = Gauge(
    "payera_ledger_verify_failures",
    "Problems found by the last ledger verification (0 = journal and balances agree).",
    multiprocess_mode="mostrecent",
)


# Domain apps add their own state gauges here (in AppConfig.ready), computed at scrape time as the
# platform's: a callable yielding metric families (the platform knows no domain app).
STATE_GAUGES: list = []


def state_gauges_register(collect) -> None:
    if collect not in STATE_GAUGES:
        STATE_GAUGES.append(collect)


class PlatformCollector:
    """Gauges from the database, computed when scraped (same in every worker)."""

    def collect(self):
        for domain in STATE_GAUGES:
            yield from domain()
        from payera.events.ops import backlog_snapshot

        snap = backlog_snapshot(now=timezone.now())
        yield GaugeMetricFamily(
            "payera_outbox_unrelayed_events", "Domain events not yet fanned out to webhook deliveries.",
            value=snap.outbox_unrelayed,
        )
        yield GaugeMetricFamily(
            "payera_outbox_lag_seconds", "Age of the oldest event not yet relayed (0 when none).",
            value=snap.outbox_lag_seconds,
        )
        yield GaugeMetricFamily(
            "payera_webhook_backlog", "Merchant webhook deliveries still open (pending or retrying).",
            value=snap.webhook_backlog,
        )
        yield GaugeMetricFamily(
            "payera_webhook_oldest_open_seconds", "Age of the oldest open webhook delivery (0 when none).",
            value=snap.webhook_oldest_open_seconds,
        )
        yield GaugeMetricFamily(
            "payera_webhook_dead_letters", "Webhook deliveries dead-lettered (given up on, replayable).",
            value=snap.dead_letters,
        )


def _loopback(request: HttpRequest) -> bool:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _allowed(request: HttpRequest) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "")
    if token:
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        return hmac.compare_digest(given.encode(), token.encode())
    return _loopback(request)


def render_metrics() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        base = CollectorRegistry()
        multiprocess.MultiProcessCollector(base)
    else:
        base = REGISTRY
    platform = CollectorRegistry(auto_describe=False)
    platform.register(PlatformCollector())
    return generate_latest(base) + generate_latest(platform)


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        # As if it did not exist: no hint to a scanner that metrics live here.
        return JsonResponse(
            error_body("invalid_request_error", "resource_missing", "Unrecognized request URL or no such object."),
            status=404,
        )
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
