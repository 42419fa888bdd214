"""Writes of the audit app: authentication events. (Record of model changes is automatic for
models registered through `payera.audit.registry.register`.)"""

from __future__ import annotations

import logging

from django.db import DatabaseError, transaction

from payera.audit.context import current_actor
from payera.core.masking import mask_pans, mask_text

logger = logging.getLogger("payera.audit")


API_KEY_PREFIX_LENGTH = 16  # "sk_test_" + 8: the visible prefix of an API key, never more


def _clean_identifier(identifier: str | None, kind: str = "") -> str:
    """Callers pass a key *prefix* or a username; this is the belt to those braces: an API key
    identifier has its card numbers masked (a card number sent as the key), then is cut to the
    visible prefix length (a full key can not survive), and anything else is masked (a key, card
    number or password pasted into a username field)."""
    text = str(identifier or "")
    if kind == "api_key":
        return mask_pans(text)[:API_KEY_PREFIX_LENGTH]
    return mask_text(text)[:150]


def _record(*, event: str, kind: str, identifier: str, reason: str, user_id, remote_addr, request_id) -> None:
    from payera.audit.models import SecurityEvent

    actor = current_actor()
    if remote_addr is None and actor is not None:
        remote_addr = actor.remote_addr
    if request_id is None and actor is not None:
        request_id = actor.request_id
    try:
        # A savepoint: a failure to write the record never breaks the caller's transaction.
        with transaction.atomic():
            SecurityEvent.objects.create(
                event=event,
                kind=kind[:32],
                identifier=_clean_identifier(identifier, kind),
                reason=(reason or "")[:100],
                user_id=user_id,
                remote_addr=remote_addr or None,
                request_id=(request_id or "")[:64],
            )
    except DatabaseError:
        logger.exception("could not store a security event", extra={"event": event, "kind": kind})


def record_auth_failure(
    *, kind: str, identifier: str, reason: str, remote_addr: str | None, request_id: str | None
) -> None:
    """An authentication failure: kind `api_key` or `staff_login`; identifier is a key *prefix*
    or a username, never a secret. Stored in the audit trail (SecurityEvent) and logged."""
    logger.warning(
        "authentication failure",
        extra={
            "kind": kind, "identifier": _clean_identifier(identifier, kind), "reason": reason,
            "remote_addr": remote_addr,
        },
    )
    _record(
        event="auth_failure", kind=kind, identifier=identifier, reason=reason, user_id=None,
        remote_addr=remote_addr, request_id=request_id,
    )


def record_staff_login(*, user, remote_addr: str | None, request_id: str | None) -> None:
    _record(
        event="login", kind="staff_login", identifier=user.get_username(), reason="", user_id=user.pk,
        remote_addr=remote_addr, request_id=request_id,
    )


def record_staff_logout(*, user, remote_addr: str | None, request_id: str | None) -> None:
    _record(
        event="logout", kind="staff_login", identifier=user.get_username() if user else "", reason="",
        user_id=getattr(user, "pk", None), remote_addr=remote_addr, request_id=request_id,
    )


def record_secret_change(instance, *, field: str, note: str) -> None:
    """An update record saying that a secret of `instance` changed, without it: the registry never
    records secret-looking fields, so a save that changes only them (a webhook endpoint's signing
    secret rolled) would otherwise leave no record at all. Call it in the saving transaction."""
    from payera.audit.models import AuditLogEntry
    from payera.audit.registry import merchant_id_of

    AuditLogEntry.objects.log_create(
        instance, force_log=True, action=AuditLogEntry.Action.UPDATE, changes={field: ["***", note]},
        object_merchant_id=merchant_id_of(instance),
    )
