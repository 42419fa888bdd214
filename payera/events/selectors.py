"""Reads of the events app. Every selector takes the merchant, so another merchant's id is
answered as missing (404) by construction."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet

from payera.events.errors import EventNotFoundError, WebhookDeliveryNotFoundError, WebhookEndpointNotFoundError
from payera.events.models import DeliveryAttempt, Event, WebhookDelivery, WebhookEndpoint
from payera.events.types import EndpointWithSecret

_CLOCK_MARGIN = timedelta(minutes=5)


def event_get(*, merchant_id: str, event_id: str) -> Event:
    event = Event.objects.filter(merchant_id=merchant_id, pk=event_id).first()
    if event is None:
        raise EventNotFoundError(f"No such event: '{event_id}'.", param="id")
    return event


def event_list(*, merchant_id: str, type: str | None = None) -> QuerySet[Event]:  # noqa: A002 - API name
    """The merchant's events, newest first; `type` may be exact or a `family.*` pattern."""
    qs = Event.objects.filter(merchant_id=merchant_id)
    if type:
        qs = qs.filter(type__startswith=type[:-1]) if type.endswith(".*") else qs.filter(type=type)
    return qs.order_by("-created_at", "-id")


def event_list_for_objects(*, merchant_id: str, object_ids: list[str], since=None, limit: int = 200) -> list[Event]:
    """The merchant's events whose `data.object` is one of `object_ids` (its `id`, or the
    `payment` it belongs to), oldest first, at most `limit`. `since` (e.g. the payment's creation)
    bounds the scan of the merchant's index to the object's lifetime."""
    from django.db.models import Q

    qs = Event.objects.filter(merchant_id=merchant_id)
    if since is not None:
        # an event's created_at is the database's clock (payera.core.horizon), `since` usually an
        # application server's: a margin, so a skew between them drops no event of the object
        qs = qs.filter(created_at__gte=since - _CLOCK_MARGIN)
    ids = list(object_ids)
    qs = qs.filter(Q(data__object__id__in=ids) | Q(data__object__payment__in=ids))
    return list(qs.order_by("created_at", "id")[:limit])


def webhook_endpoint_get(*, merchant_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(merchant_id=merchant_id, pk=endpoint_id).first()
    if endpoint is None:
        raise WebhookEndpointNotFoundError(f"No such webhook endpoint: '{endpoint_id}'.", param="id")
    return endpoint


def webhook_endpoint_with_secret(*, merchant_id: str, endpoint_id: str) -> EndpointWithSecret:
    """The endpoint with the secret it signs with now: what a retry of the request that created or
    rolled it answers when that request's answer was lost (`MerchantApiView.idempotent_resume`)."""
    from payera.events.services.endpoints import decrypt_secret

    endpoint = webhook_endpoint_get(merchant_id=merchant_id, endpoint_id=endpoint_id)
    return EndpointWithSecret(endpoint=endpoint, secret=decrypt_secret(endpoint.secret_ciphertext))


def webhook_endpoint_list(*, merchant_id: str) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(merchant_id=merchant_id).order_by("-created_at", "-id")


def webhook_delivery_get(*, merchant_id: str, delivery_id: str) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.filter(merchant_id=merchant_id, pk=delivery_id).first()
    if delivery is None:
        raise WebhookDeliveryNotFoundError(f"No such webhook delivery: '{delivery_id}'.", param="id")
    return delivery


def webhook_delivery_list(
    *, merchant_id: str, endpoint_id: str | None = None, event_id: str | None = None, status: str | None = None
) -> QuerySet[WebhookDelivery]:
    qs = WebhookDelivery.objects.filter(merchant_id=merchant_id)
    if endpoint_id:
        qs = qs.filter(endpoint_id=endpoint_id)
    if event_id:
        qs = qs.filter(event_id=event_id)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def delivery_attempt_list(*, merchant_id: str, delivery_id: str) -> QuerySet[DeliveryAttempt]:
    """The attempt log of one delivery, oldest first."""
    delivery = webhook_delivery_get(merchant_id=merchant_id, delivery_id=delivery_id)
    return DeliveryAttempt.objects.filter(delivery=delivery).order_by("number", "id")
