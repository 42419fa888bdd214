"""Plain values other apps may import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from payera.events.models import WebhookEndpoint

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
WILDCARD = "*"

# Event types of the contract; `family.*` patterns are accepted in enabled_events too.
KNOWN_EVENT_TYPES = (
    "payment.succeeded",
    "payment.failed",
    "payment.requires_action",
    "payment.canceled",
    "payment.captured",
    "payment.capture_failed",
    "payment.disputed",
    "refund.succeeded",
    "refund.failed",
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


@dataclass(frozen=True, slots=True)
class EndpointWithSecret:
    """What create and roll answer: the endpoint and its new secret, shown this one time."""

    endpoint: WebhookEndpoint
    secret: str
