"""Rows for back-office tests, made through services and factories."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from payera.events.models import DeliveryStatus, WebhookDelivery
from payera.events.services import event_record, event_relay, webhook_endpoint_create
from tests.merchants.factories import MerchantFactory, make_api_key


@dataclass
class MerchantWorld:
    merchant: object
    api_key: object  # ApiKeyCreated: .api_key row, .secret
    endpoint: object  # EndpointWithSecret
    dead_delivery: WebhookDelivery


def merchant_world(name: str, *, card_number: str = "4242424242424242") -> MerchantWorld:
    """A merchant with an API key, a webhook endpoint and a dead-lettered delivery whose event
    carries a card-like object (last 4 only, as payments send it; the full number is only ever in
    the request the test builds, to prove it is not echoed)."""
    merchant = MerchantFactory(name=name)
    api_key = make_api_key(merchant)
    endpoint = webhook_endpoint_create(merchant_id=merchant.pk, url="http://127.0.0.1:9/hook", enabled_events=["*"])
    with transaction.atomic():  # an event is recorded in the transaction of its change
        event = event_record(
            merchant_id=merchant.pk,
            type="payment.succeeded",
            data={"id": "pay_test", "object": "payment", "card": {"last4": card_number[-4:], "brand": "visa"}},
        )
    [delivery_id] = event_relay(event_id=event.pk)
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        status=DeliveryStatus.DEAD, next_attempt_at=None, last_error="HTTP 500"
    )
    return MerchantWorld(merchant, api_key, endpoint, WebhookDelivery.objects.get(pk=delivery_id))
