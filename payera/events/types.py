"""Plain values other apps may import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from payera.events.models import WebhookEndpoint

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
WILDCARD = "*"

# Every event type Payera sends (tests/events/test_event_types.py holds the emitting code to this
# list). enabled_events takes these, `family.*` patterns of their families, or "*": anything else
# is refused, so a misspelt type cannot subscribe an endpoint to nothing.
KNOWN_EVENT_TYPES = (
    "payment.succeeded",
    "payment.failed",
    "payment.requires_action",
    "payment.requires_capture",
    "payment.canceled",
    "payment.captured",
    "payment.capture_failed",
    "payment.cancel_failed",
    "payment.refunded",
    "payment.disputed",
    "refund.succeeded",
    "refund.failed",
    "booking.created",
    "booking.requires_action",
    "booking.held",
    "booking.confirmed",
    "booking.completed",
    "booking.canceled",
    "booking.expired",
    "booking.failed",
    "booking.refund_failed",
    "dispute.created",
    "dispute.updated",
    "dispute.closed",
    "payout.created",
    "payout.paid",
    "payout.failed",
    "payment.authentication_required",
    "payment_method.detached",
    "payment_method.mandate_inactive",
    "subscription.created",
    "subscription.updated",
    "subscription.payment_succeeded",
    "subscription.payment_failed",
    "subscription.past_due",
    "subscription.recovered",
    "subscription.unpaid",
    "subscription.canceled",
    "webhook_endpoint.disabled",
)
ENDPOINT_DISABLED = "webhook_endpoint.disabled"
KNOWN_EVENT_TYPE_SET = frozenset(KNOWN_EVENT_TYPES)  # the membership test on every event recorded
KNOWN_EVENT_FAMILIES = frozenset(t.split(".", 1)[0] for t in KNOWN_EVENT_TYPES)


@dataclass(frozen=True, slots=True)
class EndpointWithSecret:
    """What create and roll answer: the endpoint and its new secret, shown this one time."""

    endpoint: WebhookEndpoint
    secret: str
