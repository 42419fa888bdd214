"""Merchant webhook endpoints: create, update, roll the signing secret, delete."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from payera.audit.services import record_secret_change
from payera.core.errors import InvalidRequestError, ServiceUnavailableError
from payera.events import clock, ssrf
from payera.events.errors import WebhookEndpointNotFoundError, WebhookUrlResolutionTimeoutError
from payera.events.models import EndpointStatus, WebhookEndpoint
from payera.events.services.events import validate_merchant_id
from payera.events.types import (
    KNOWN_EVENT_FAMILIES,
    KNOWN_EVENT_TYPE_SET,
    SECRET_PREFIX,
    WILDCARD,
    EndpointWithSecret,
)
from payera.idempotency.services import idempotency_resource_record
from payera.secrets import services as secrets_facade

SECRET_KEY_NAME = "events-webhook-endpoint"  # noqa: S105 - the secrets backend key that encrypts signing secrets
MAX_ENABLED_EVENTS = 100
MAX_OVERLAP_HOURS = 7 * 24
ENABLED_EVENT_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.([a-z][a-z0-9_]*|\*)$")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def _validate_enabled_events(value: object) -> list[str]:
    if not isinstance(value, list | tuple) or not value:
        raise InvalidRequestError(
            'enabled_events must be a non-empty list of event types, or ["*"].', param="enabled_events"
        )
    if len(value) > MAX_ENABLED_EVENTS:
        raise InvalidRequestError(f"enabled_events takes at most {MAX_ENABLED_EVENTS} types.", param="enabled_events")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not (item == WILDCARD or ENABLED_EVENT_RE.match(item)):
            raise InvalidRequestError(f"Invalid event type in enabled_events: {item!r}.", param="enabled_events")
        if not _known_pattern(item):
            raise InvalidRequestError(
                f"Unknown event type in enabled_events: {item!r} (docs/webhooks.md lists the types; "
                '"family.*" takes a family, "*" everything).', param="enabled_events"
            )
        if item not in out:
            out.append(item)
    if WILDCARD in out and len(out) > 1:
        raise InvalidRequestError('"*" cannot be combined with other event types.', param="enabled_events")
    return out


def _known_pattern(item: str) -> bool:
    """"*", a type Payera sends, or "family.*" of such a type's family."""
    if item == WILDCARD or item in KNOWN_EVENT_TYPE_SET:
        return True
    family, _, rest = item.partition(".")
    return rest == "*" and family in KNOWN_EVENT_FAMILIES


def _validate_description(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 500:
        raise InvalidRequestError("description must be a string of at most 500 characters.", param="description")
    return value


def _validate_url(value: object, merchant_id: str) -> str:
    """The SSRF check, its DNS lookup bounded (`ssrf.check_url_within`, the sender's): a host whose
    name server hangs must not hold the web thread, and the merchant's hung lookups count against
    its own share of the resolver threads. I/O: callers are outside any transaction here."""
    limit = settings.WEBHOOK_URL_RESOLVE_TIMEOUT_SECONDS
    try:
        ssrf.check_url_within(value, limit, merchant_id=merchant_id)  # type: ignore[arg-type]
    except ssrf.MerchantLookupsHang:
        host = ssrf.parse_url(value).host
        raise WebhookUrlResolutionTimeoutError(
            f"url host '{host}' could not be checked: earlier lookups of this account's webhook hosts have not"
            " answered (check their DNS); try again later.", param="url"
        ) from None
    except ssrf.ResolutionTimeout:
        host = ssrf.parse_url(value).host
        raise WebhookUrlResolutionTimeoutError(
            f"url host '{host}' could not be resolved in time ({limit:g} s): check its DNS and try again.", param="url"
        ) from None
    except ssrf.ResolverBusy:  # other hosts' hung lookups hold every resolver thread: ours, retry
        raise ServiceUnavailableError(
            "The webhook URL could not be checked right now (name resolution busy). Retry later."
        ) from None
    return str(value).strip()


def _new_secret() -> tuple[str, str]:
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    return secret, secrets_facade.encrypt(key=SECRET_KEY_NAME, plaintext=secret.encode())


def decrypt_secret(ciphertext: str) -> str:
    return secrets_facade.decrypt(key=SECRET_KEY_NAME, ciphertext=ciphertext).decode()


def endpoint_signing_secret_ciphertexts(endpoint: WebhookEndpoint, *, at=None) -> list[str]:
    """Current secret first, then the previous one while its overlap lasts."""
    at = at or clock.now()
    out = [endpoint.secret_ciphertext]
    if (
        endpoint.previous_secret_ciphertext
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > at
    ):
        out.append(endpoint.previous_secret_ciphertext)
    return out


def webhook_endpoint_lock(*, endpoint_id: str, merchant_id: str | None = None) -> WebhookEndpoint:
    """The one lock helper of the endpoint aggregate (taken before its deliveries')."""
    qs = WebhookEndpoint.objects.select_for_update(of=("self",)).filter(pk=endpoint_id)
    if merchant_id is not None:
        qs = qs.filter(merchant_id=merchant_id)
    endpoint = qs.first()
    if endpoint is None:
        raise WebhookEndpointNotFoundError(f"No such webhook endpoint: '{endpoint_id}'.", param="id")
    return endpoint


def webhook_endpoint_create(
    *, merchant_id: str, url: str, enabled_events: list[str], description: str = ""
) -> EndpointWithSecret:
    """Create an endpoint; the answer carries its `whsec_…` secret, the only time it is shown."""
    validate_merchant_id(merchant_id)
    events = _validate_enabled_events(enabled_events)
    description = _validate_description(description)
    url = _validate_url(url, merchant_id)
    secret, ciphertext = _new_secret()
    now = clock.now()
    with transaction.atomic(durable=True):
        endpoint = WebhookEndpoint.objects.create(
            merchant_id=merchant_id,
            url=url,
            enabled_events=events,
            description=description,
            secret_ciphertext=ciphertext,
            updated_at=now,  # created_at: the commit stamp of its INSERT (CommitStampField)
        )
        idempotency_resource_record(resource=endpoint.id)  # a retry after a crash answers this endpoint
    return EndpointWithSecret(endpoint=endpoint, secret=secret)


def webhook_endpoint_update(
    *,
    merchant_id: str,
    endpoint_id: str,
    url: str = UNSET,
    enabled_events: list[str] = UNSET,
    description: str = UNSET,
    status: str = UNSET,
) -> WebhookEndpoint:
    """Change what was given. `status` "enabled" re-enables a disabled endpoint and resets its
    failure streak; "disabled" stops new deliveries to it."""
    changes: dict[str, Any] = {}
    if url is not UNSET:
        changes["url"] = _validate_url(url, merchant_id)
    if enabled_events is not UNSET:
        changes["enabled_events"] = _validate_enabled_events(enabled_events)
    if description is not UNSET:
        changes["description"] = _validate_description(description)
    if status is not UNSET and status not in EndpointStatus.values:
        raise InvalidRequestError("status must be 'enabled' or 'disabled'.", param="status")
    with transaction.atomic(durable=True):
        endpoint = webhook_endpoint_lock(endpoint_id=endpoint_id, merchant_id=merchant_id)
        for field, value in changes.items():
            setattr(endpoint, field, value)
        if status is not UNSET and status != endpoint.status:
            endpoint.status = status
            endpoint.disabled_reason = "" if status == EndpointStatus.ENABLED else "disabled by the merchant"
            if status == EndpointStatus.ENABLED:
                endpoint.consecutive_failures = 0
                endpoint.failing_since = None
        endpoint.updated_at = clock.now()
        endpoint.save()
    return endpoint


def webhook_endpoint_roll_secret(
    *, merchant_id: str, endpoint_id: str, overlap_hours: int | float = 24
) -> EndpointWithSecret:
    """A new signing secret; the current one keeps signing beside it for `overlap_hours`
    (0 = replace at once), so the merchant can switch without missing a verification."""
    if (
        isinstance(overlap_hours, bool)
        or not isinstance(overlap_hours, int | float)
        or not 0 <= overlap_hours <= MAX_OVERLAP_HOURS
    ):
        raise InvalidRequestError(f"overlap_hours must be between 0 and {MAX_OVERLAP_HOURS}.", param="overlap_hours")
    secret, ciphertext = _new_secret()
    now = clock.now()
    with transaction.atomic(durable=True):
        endpoint = webhook_endpoint_lock(endpoint_id=endpoint_id, merchant_id=merchant_id)
        if overlap_hours > 0:
            endpoint.previous_secret_ciphertext = endpoint.secret_ciphertext
            endpoint.previous_secret_expires_at = now + timedelta(hours=overlap_hours)
        else:
            endpoint.previous_secret_ciphertext = ""
            endpoint.previous_secret_expires_at = None
        endpoint.secret_ciphertext = ciphertext
        endpoint.updated_at = now
        endpoint.save()
        # the audit trail never records the secret fields: say that the secret changed, and how
        kept = f"previous kept until {endpoint.previous_secret_expires_at.isoformat()}" if overlap_hours > 0 else (
            "previous revoked at once")
        record_secret_change(endpoint, field="signing_secret", note=f"rolled; {kept}")
        # a retry after a crash answers this roll's secret instead of rolling again (which would end
        # the overlap of the secret the merchant holds)
        idempotency_resource_record(resource=endpoint.id)
    return EndpointWithSecret(endpoint=endpoint, secret=secret)


def webhook_endpoint_delete(*, merchant_id: str, endpoint_id: str) -> None:
    """Delete the endpoint with its deliveries; in-flight tasks find nothing and stop."""
    with transaction.atomic(durable=True):
        endpoint = webhook_endpoint_lock(endpoint_id=endpoint_id, merchant_id=merchant_id)
        endpoint.delete()
