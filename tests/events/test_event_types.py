"""Endpoints subscribe only to event types Payera sends.

What was wrong: `enabled_events` took any well-formed name, so a merchant who typed
`payment.succeded` (or `payments.*`, or `booking.confirm`) got an endpoint that received nothing,
silently: payments it never heard of. `KNOWN_EVENT_TYPES` (the list the check uses) also lacked
types the code sends (every `booking.*`, `payment.refunded`, `payment.requires_capture`), so a
merchant could not have subscribed to those by name. Now an unknown type or family is 400 on
create and update, and the test settings make recording an unlisted type raise, so the whole
suite proves the list holds every type the code sends."""

from __future__ import annotations

import pytest
from django.db import transaction

from payera.core.errors import InvalidRequestError
from payera.events.models import WebhookEndpoint
from payera.events.services import event_record, webhook_endpoint_create, webhook_endpoint_update
from payera.events.types import KNOWN_EVENT_TYPES

pytestmark = pytest.mark.django_db
M = "mer_types"
URL = "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(
    "enabled", [["payment.succeded"], ["payments.*"], ["booking.confirm"], ["payment.succeeded", "refund.done"]]
)
def test_an_unknown_event_type_or_family_is_refused_and_nothing_is_stored(enabled):
    with pytest.raises(InvalidRequestError) as exc:
        webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=enabled)
    assert exc.value.param == "enabled_events" and "Unknown event type" in exc.value.message
    assert not WebhookEndpoint.objects.exists()


def test_an_update_to_an_unknown_type_is_refused_and_the_endpoint_keeps_its_types():
    endpoint = webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=["refund.*"]).endpoint
    with pytest.raises(InvalidRequestError):
        webhook_endpoint_update(merchant_id=M, endpoint_id=endpoint.pk, enabled_events=["refund.succeded"])
    endpoint.refresh_from_db()
    assert endpoint.enabled_events == ["refund.*"]


@pytest.mark.parametrize(
    "enabled",
    [
        ["*"],
        ["booking.*"],
        ["booking.confirmed", "payment.refunded", "payment.requires_capture"],
        list(KNOWN_EVENT_TYPES),
    ],
)
def test_every_type_payera_sends_and_its_family_can_be_subscribed_to(enabled):
    endpoint = webhook_endpoint_create(merchant_id=M, url=URL, enabled_events=enabled).endpoint
    assert endpoint.enabled_events == enabled


def test_recording_an_unlisted_type_raises_under_the_test_settings_and_only_logs_otherwise(settings, caplog):
    with pytest.raises(ValueError, match="KNOWN_EVENT_TYPES"), transaction.atomic():
        event_record(merchant_id=M, type="payment.teleported", data={"id": "pay_1"})
    settings.EVENTS_REFUSE_UNKNOWN_TYPES = False
    with transaction.atomic():
        event = event_record(merchant_id=M, type="payment.teleported", data={"id": "pay_1"})
    assert event.type == "payment.teleported"  # the change it records is never lost for it
    assert "payment.teleported" in caplog.text and "KNOWN_EVENT_TYPES" in caplog.text
