"""Public writes of the events app (other apps import from here)."""

from payera.events.services.deliveries import (
    delivery_replay,
    endpoint_replay_dead_letters,
    webhook_deliver,
    webhook_retry_due,
)
from payera.events.services.endpoints import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_roll_secret,
    webhook_endpoint_update,
)
from payera.events.services.events import (
    event_prune,
    event_record,
    event_record_many,
    event_relay,
    event_relay_pending,
)
from payera.events.signing import sign

__all__ = [
    "delivery_replay",
    "endpoint_replay_dead_letters",
    "event_prune",
    "event_record",
    "event_record_many",
    "event_relay",
    "event_relay_pending",
    "sign",
    "webhook_deliver",
    "webhook_endpoint_create",
    "webhook_endpoint_delete",
    "webhook_endpoint_roll_secret",
    "webhook_endpoint_update",
    "webhook_retry_due",
]
