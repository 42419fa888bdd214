"""Typed errors of the events app (rendered by the one exception handler)."""

from __future__ import annotations

from payera.core.errors import InvalidRequestError, NotFoundError


class WebhookUrlInvalidError(InvalidRequestError):
    code = "url_invalid"
    default_message = "The webhook URL is invalid."


class WebhookUrlForbiddenError(InvalidRequestError):
    """The URL points at (or resolves to) a loopback, private, link-local or metadata address."""

    code = "url_forbidden"
    default_message = "Webhook URLs must resolve to public internet addresses."


class WebhookUrlResolutionTimeoutError(InvalidRequestError):
    """The URL's host did not resolve within the time given to endpoint creation or update."""

    code = "url_resolution_timeout"
    default_message = "The webhook URL's host could not be resolved in time."


class EventNotFoundError(NotFoundError):
    default_message = "No such event."


class WebhookEndpointNotFoundError(NotFoundError):
    default_message = "No such webhook endpoint."


class WebhookDeliveryNotFoundError(NotFoundError):
    default_message = "No such webhook delivery."


class DeliveryNotReplayableError(InvalidRequestError):
    code = "delivery_not_replayable"
    default_message = "Only dead or failing deliveries of an enabled endpoint can be replayed."
