"""Writes of the audit app. (Interface fixed; the audit app persists these records.)"""

from __future__ import annotations

import logging

logger = logging.getLogger("payera.audit")


def record_auth_failure(
    *, kind: str, identifier: str, reason: str, remote_addr: str | None, request_id: str | None
) -> None:
    """An authentication failure: kind `api_key` or `staff_login`; identifier is a key *prefix*
    or a username, never a secret."""
    logger.warning(
        "authentication failure",
        extra={"kind": kind, "identifier": identifier, "reason": reason, "remote_addr": remote_addr},
    )
