"""Read-only aggregates of the outbox and webhook deliveries, for metrics and SLO reports.

Used by `payera.core.metrics` (gauges computed at scrape time) and the `slo_report` command.
Plain values out; nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Min, Q

from payera.events.models import DeliveryAttempt, DeliveryStatus, Event, WebhookDelivery


@dataclass(frozen=True, slots=True)
class BacklogSnapshot:
    outbox_unrelayed: int  # events not yet fanned out to deliveries
    outbox_lag_seconds: float  # age of the oldest of them (0 when none)
    webhook_backlog: int  # deliveries still open (pending or failed-and-retrying)
    webhook_oldest_open_seconds: float
    dead_letters: int  # deliveries given up on (replayable from the admin)


def backlog_snapshot(*, now: datetime) -> BacklogSnapshot:
    outbox = Event.objects.filter(relayed_at__isnull=True).aggregate(n=Count("id"), oldest=Min("created_at"))
    deliveries = WebhookDelivery.objects.aggregate(
        open=Count("id", filter=Q(status__in=DeliveryStatus.open())),
        oldest=Min("created_at", filter=Q(status__in=DeliveryStatus.open())),
        dead=Count("id", filter=Q(status=DeliveryStatus.DEAD)),
    )

    def age(oldest: datetime | None) -> float:
        return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0

    return BacklogSnapshot(
        outbox_unrelayed=outbox["n"],
        outbox_lag_seconds=age(outbox["oldest"]),
        webhook_backlog=deliveries["open"],
        webhook_oldest_open_seconds=age(deliveries["oldest"]),
        dead_letters=deliveries["dead"],
    )


@dataclass(frozen=True, slots=True)
class DeliveryTiming:
    delivery_id: int
    event_created_at: datetime
    first_attempt_at: datetime | None  # start of the first attempt, None if never tried
    succeeded_at: datetime | None  # when the first 2xx arrived (attempt start + latency), or None
    attempts: int
    status: str


def delivery_timings(*, since: datetime, until: datetime) -> list[DeliveryTiming]:
    """Per webhook delivery of an event created in [since, until): when it was tried and delivered."""
    window = {"event__created_at__gte": since, "event__created_at__lt": until}
    rows = WebhookDelivery.objects.filter(**window).values_list("id", "event__created_at", "status").order_by("id")
    first_try: dict[int, datetime] = {}
    first_success: dict[int, datetime] = {}
    tries: dict[int, int] = {}
    attempts = (
        DeliveryAttempt.objects.filter(**{f"delivery__{k}": v for k, v in window.items()})
        .values_list("delivery_id", "started_at", "latency_ms", "succeeded")
        .order_by("delivery_id", "number", "id")
    )
    for delivery_id, started_at, latency_ms, succeeded in attempts.iterator():
        tries[delivery_id] = tries.get(delivery_id, 0) + 1
        first_try.setdefault(delivery_id, started_at)
        if succeeded and delivery_id not in first_success:
            first_success[delivery_id] = started_at + timedelta(milliseconds=latency_ms or 0)
    return [
        DeliveryTiming(
            delivery_id=i,
            event_created_at=created,
            first_attempt_at=first_try.get(i),
            succeeded_at=first_success.get(i),
            attempts=tries.get(i, 0),
            status=status,
        )
        for i, created, status in rows
    ]
