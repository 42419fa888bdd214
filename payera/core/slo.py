"""SLO computations for `manage.py slo_report` (docs/slo.md).

- Webhooks: from the stored deliveries and attempts (payera.events). The SLI is the time from
  the event's creation to its delivery (the merchant's first 2xx). Deliveries that were tried
  but never accepted are the merchant's endpoint failing: counted and shown, but not in the SLI
  (we cannot deliver to an endpoint that answers 500). Deliveries never even tried within the
  threshold are ours: they count as late.
- API: requests are not stored per request; the source is Prometheus (django-prometheus'
  histograms and status counters, scraped from /metrics), queried over its HTTP API for the
  period when `--prometheus` / `SLO_PROMETHEUS_URL` is set.
"""

from __future__ import annotations

import math
from datetime import datetime

import httpx

WEBHOOK_TARGET_SECONDS = 60.0
WEBHOOK_TARGET_QUANTILE = 0.99
API_AVAILABILITY_TARGET = 0.9995
API_P99_TARGET_SECONDS = 0.5


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (no interpolation: a p99 is a value that was observed)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def webhook_slo(*, since: datetime, until: datetime, now: datetime) -> dict:
    from payera.events.ops import delivery_timings

    delivered: list[float] = []
    late_untried = merchant_failing = pending_young = 0
    for t in delivery_timings(since=since, until=until):
        if t.succeeded_at is not None:
            delivered.append(max(0.0, (t.succeeded_at - t.event_created_at).total_seconds()))
        elif t.attempts:
            merchant_failing += 1
        elif (now - t.event_created_at).total_seconds() > WEBHOOK_TARGET_SECONDS:
            late_untried += 1  # never even tried within the target: our fault
        else:
            pending_young += 1  # too young to judge
    measured = delivered + [math.inf] * late_untried
    within = sum(1 for s in measured if s <= WEBHOOK_TARGET_SECONDS)
    p99 = quantile(measured, WEBHOOK_TARGET_QUANTILE)
    ratio = within / len(measured) if measured else None
    return {
        "target": f"p99 of delivery time <= {WEBHOOK_TARGET_SECONDS:.0f}s",
        "deliveries": len(measured),
        "delivered_within_target": within,
        "within_target_ratio": ratio,
        "p50_seconds": _finite(quantile(measured, 0.5)),
        "p99_seconds": _finite(p99),
        "never_tried_late": late_untried,
        "excluded_merchant_endpoint_failing": merchant_failing,
        "excluded_too_recent": pending_young,
        "met": None if p99 is None else p99 <= WEBHOOK_TARGET_SECONDS,
    }


def _finite(value: float | None) -> float | str | None:
    if value is None:
        return None
    return "never" if math.isinf(value) else round(value, 3)


# --- API SLOs from Prometheus ------------------------------------------------------------
RESPONSES = "django_http_responses_total_by_status_view_method_total"
LATENCY_BUCKETS = "django_http_requests_latency_seconds_by_view_method_bucket"


def api_queries(*, window_seconds: int, view_regex: str) -> dict[str, str]:
    sel = f'view=~"{view_regex}"'
    w = f"[{window_seconds}s]"
    return {
        "requests": f"sum(increase({RESPONSES}{{{sel}}}{w}))",
        "errors_5xx": f'sum(increase({RESPONSES}{{{sel},status=~"5.."}}{w}))',
        "p99_seconds": f"histogram_quantile(0.99, sum by (le) (increase({LATENCY_BUCKETS}{{{sel}}}{w})))",
    }


def api_slo(*, since: datetime, until: datetime, prometheus_url: str, view_regex: str) -> dict:
    base = {"source": "prometheus", "view_regex": view_regex}
    if not prometheus_url:
        return {**base, "available": False, "reason": "no Prometheus URL (--prometheus or SLO_PROMETHEUS_URL)"}
    window = max(1, int((until - since).total_seconds()))
    values: dict[str, float | None] = {}
    try:
        with httpx.Client(base_url=prometheus_url, timeout=10.0) as client:
            for name, query in api_queries(window_seconds=window, view_regex=view_regex).items():
                response = client.get("/api/v1/query", params={"query": query, "time": until.timestamp()})
                response.raise_for_status()
                result = response.json()["data"]["result"]
                values[name] = float(result[0]["value"][1]) if result else None
    except (httpx.HTTPError, KeyError, ValueError, IndexError) as exc:
        return {**base, "available": False, "reason": f"Prometheus query failed ({type(exc).__name__})"}
    requests, errors = values["requests"] or 0.0, values["errors_5xx"] or 0.0
    availability = (1 - errors / requests) if requests else None
    p99 = values["p99_seconds"]
    if p99 is not None and math.isnan(p99):
        p99 = None
    return {
        **base,
        "available": True,
        "requests": round(requests),
        "errors_5xx": round(errors),
        "availability": availability,
        "availability_target": API_AVAILABILITY_TARGET,
        "availability_met": None if availability is None else availability >= API_AVAILABILITY_TARGET,
        "p99_seconds": p99,
        "p99_target_seconds": API_P99_TARGET_SECONDS,
        "p99_met": None if p99 is None else p99 < API_P99_TARGET_SECONDS,
    }
