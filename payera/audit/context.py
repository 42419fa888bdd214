"""Who is acting right now: a staff user or a merchant's API key, from where, in which request.

The API authentication class calls `bind_actor` once it knows the key; the audit trail reads
`current_actor()` when it writes a record. (Interface fixed; the audit app builds on it.)
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: int | None = None
    api_key_id: str | None = None
    merchant_id: str | None = None
    remote_addr: str | None = None
    request_id: str | None = None


_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("payera_audit_actor", default=None)


def bind_actor(
    *,
    user_id: int | None = None,
    api_key_id: str | None = None,
    merchant_id: str | None = None,
    remote_addr: str | None = None,
    request_id: str | None = None,
) -> contextvars.Token:
    return _actor.set(
        Actor(
            user_id=user_id,
            api_key_id=api_key_id,
            merchant_id=merchant_id,
            remote_addr=remote_addr,
            request_id=request_id,
        )
    )


def current_actor() -> Actor | None:
    return _actor.get()


def clear_actor(token: contextvars.Token | None = None) -> None:
    if token is not None:
        _actor.reset(token)
    else:
        _actor.set(None)
