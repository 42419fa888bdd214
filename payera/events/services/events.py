"""The transactional outbox: record an event in the caller's transaction, relay it after commit
(or from the sweep when the broker was unreachable), prune old events."""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Sequence
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction

from payera.core.errors import InvalidRequestError
from payera.core.horizon import STAMP_AFTER_XID_PG, stamp_after_xid
from payera.core.rowsql import new_row, rows_insert
from payera.core.work import work_began
from payera.events import clock, dispatch
from payera.events.models import (
    MERCHANT_ID_LENGTH,
    DeliveryStatus,
    EndpointStatus,
    Event,
    WebhookDelivery,
    WebhookEndpoint,
)
from payera.events.types import KNOWN_EVENT_TYPE_SET

logger = logging.getLogger("payera.events")

EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def _tasks():
    from payera.events import tasks  # tasks import services; import lazily to avoid a cycle

    return tasks


def validate_merchant_id(merchant_id: object) -> str:
    if not isinstance(merchant_id, str) or not merchant_id or len(merchant_id) > MERCHANT_ID_LENGTH:
        raise InvalidRequestError("merchant_id is invalid.", param="merchant_id")
    return merchant_id


def event_record(*, merchant_id: str, type: str, data: dict) -> Event:  # noqa: A002 - contract name
    """Write an outbox event in the caller's open transaction; relay it once that commits.

    `data` is the resource object (JSON-only: str, int, bool, None, lists, dicts), sent as
    `"data": {"object": data}`. If the transaction rolls back, the event never existed and nothing
    is sent. If the broker is down at commit, the relay sweep fans the event out later.
    """
    return event_record_many(merchant_id=merchant_id, types=(type,), data=data)[0]


def event_record_many(*, merchant_id: str, types: Sequence[str], data: dict) -> list[Event]:
    """`event_record` of one object under several types (e.g. `payment.captured` and
    `payment.succeeded`): the payload is checked and frozen once, the rows inserted in one statement."""
    if not connection.in_atomic_block:
        raise RuntimeError("event_record must run inside the transaction of the change it records")
    validate_merchant_id(merchant_id)
    for type in types:  # noqa: A001 - contract name
        if not isinstance(type, str) or not EVENT_TYPE_RE.match(type) or len(type) > 100:
            raise InvalidRequestError(f"Invalid event type: {type!r}.", param="type")
        if type not in KNOWN_EVENT_TYPE_SET:
            # A type endpoints can not subscribe to by name (enabled_events takes known types only).
            # Never lose the change for it in production; the test settings raise, so the suite
            # proves every type the code sends is listed.
            if getattr(settings, "EVENTS_REFUSE_UNKNOWN_TYPES", False):
                raise ValueError(f"event type {type!r} is not in payera.events.types.KNOWN_EVENT_TYPES")
            logger.error("event type %r is not in KNOWN_EVENT_TYPES: only '*' endpoints receive it", type)
    if not isinstance(data, dict):
        raise InvalidRequestError("Event data must be a JSON object.", param="data")
    try:
        # A round trip proves the payload is JSON-only and freezes it (no live references).
        obj = json.loads(json.dumps(data, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"Event data must be JSON-serializable: {exc}", param="data") from None
    events = [
        new_row(Event, merchant_id=merchant_id, type=type_, api_version=settings.EVENTS_API_VERSION,
                data={"object": obj})
        for type_ in types
    ]
    # Stamped by the database's clock once this transaction holds a transaction id, not by
    # `clock.now()`: `GET /v1/events` lists a first page only below `committed_before()`, which
    # covers exactly such stamps (payera.core.horizon; docs/decisions/commit-horizon.md).
    if connection.vendor == "postgresql":
        _insert_stamped(events)
    else:  # SQLite: the clock under this transaction's write lock
        created_at = stamp_after_xid()
        for i, event in enumerate(events):
            event.created_at = created_at + timedelta(microseconds=i)
        if len(events) == 1:
            events[0].save(force_insert=True)
        else:
            rows_insert(events)
    work_began()  # a state change: the request's work has begun (payera.core.work)
    if len(events) == 1:
        transaction.on_commit(partial(dispatch.enqueue, _tasks().event_relay_task, events[0].id), robust=True)
    else:  # one message for the lot (a publish costs a broker round trip and Celery's overhead)
        transaction.on_commit(partial(dispatch.enqueue, _tasks().event_relay_batch_task, *[e.id for e in events]),
                              robust=True)
    return events


@functools.cache
def _stamped_insert_sql(rows: int) -> tuple[str, tuple]:
    """`INSERT INTO events_event (…, created_at) VALUES (…, <stamp> + i µs), … RETURNING created_at`
    for `rows` rows, and the fields given as parameters (all but created_at)."""
    qn = connection.ops.quote_name
    fields = tuple(f for f in Event._meta.concrete_fields if f.attname != "created_at")
    columns = ", ".join(qn(f.column) for f in fields)
    holes = ", ".join(["%s"] * len(fields))
    values = ", ".join(
        f"({holes}, {STAMP_AFTER_XID_PG} + interval '{i} microseconds')" for i in range(rows)
    )
    # (quoted identifiers; every value a parameter)
    sql = f"INSERT INTO {qn(Event._meta.db_table)} ({columns}, {qn('created_at')}) VALUES {values}"  # noqa: S608
    sql += f" RETURNING {qn('created_at')}"
    return sql, fields


def _insert_stamped(events: list[Event]) -> None:
    """Insert the events in one statement, each `created_at` the database's clock read after this
    transaction holds a transaction id (the types of one call in their order, a microsecond apart),
    read back into the objects."""
    sql, fields = _stamped_insert_sql(len(events))
    params = [f.get_db_prep_save(f.pre_save(event, True), connection) for event in events for f in fields]
    with transaction.mark_for_rollback_on_error(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        for event, (created_at,) in zip(events, cursor.fetchall(), strict=True):
            event.created_at = created_at
    for event in events:
        event._state.adding = False
        event._state.db = connection.alias


def _fan_out(event: Event) -> list[str]:
    """Inside a transaction holding the event's row lock: one delivery per listening endpoint."""
    now = clock.now()
    endpoints = [
        e
        for e in WebhookEndpoint.objects.filter(merchant_id=event.merchant_id, status=EndpointStatus.ENABLED)
        if e.listens_to(event.type)
    ]
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                event=event,
                endpoint=endpoint,
                merchant_id=event.merchant_id,
                status=DeliveryStatus.PENDING,
                next_attempt_at=now,
                window_started_at=now,
                created_at=now,
            )
            for endpoint in endpoints
        ],
        ignore_conflicts=True,
    )
    Event.objects.filter(pk=event.pk).update(relayed_at=now)
    ids = list(
        WebhookDelivery.objects.filter(event=event, status=DeliveryStatus.PENDING, attempt_count=0).values_list(
            "id", flat=True
        )
    )
    deliver = _tasks().webhook_deliver_task
    for delivery_id in ids:
        transaction.on_commit(partial(dispatch.enqueue, deliver, delivery_id), robust=True)
    return ids


def event_relay(*, event_id: str) -> list[str]:
    """Fan one event out into deliveries (once: a relayed or locked event is skipped)."""
    with transaction.atomic(durable=True):
        event = Event.objects.select_for_update(skip_locked=True).filter(pk=event_id, relayed_at__isnull=True).first()
        if event is None:
            return []
        return _fan_out(event)


def event_relay_pending(*, min_age_seconds: float | None = None, batch_size: int = 200, max_batches: int = 50) -> int:
    """The sweep: relay events that were committed but never relayed (e.g. broker down at commit).

    Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several sweepers and the on-commit relay
    never fan an event out twice and never wait on each other.
    """
    age = settings.EVENTS_RELAY_SWEEP_MIN_AGE_SECONDS if min_age_seconds is None else min_age_seconds
    cutoff = clock.now() - timedelta(seconds=age)
    relayed = 0
    for _ in range(max_batches):
        with transaction.atomic(durable=True):
            batch = list(
                Event.objects.select_for_update(skip_locked=True)
                .filter(relayed_at__isnull=True, created_at__lte=cutoff)
                .order_by("created_at")[:batch_size]
            )
            for event in batch:
                _fan_out(event)
        relayed += len(batch)
        if len(batch) < batch_size:
            break
    if relayed:
        logger.info("relay sweep fanned out %d events", relayed)
    return relayed


def event_prune(*, retention_days: int | None = None, batch_size: int = 1000) -> int:
    """Delete events (with their deliveries and attempts) older than the retention period."""
    days = settings.EVENTS_RETENTION_DAYS if retention_days is None else retention_days
    cutoff = clock.now() - timedelta(days=days)
    deleted = 0
    while True:
        ids = list(
            Event.objects.filter(created_at__lt=cutoff).order_by("created_at").values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        with transaction.atomic(durable=True):
            Event.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
