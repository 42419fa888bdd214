"""Small helpers shared by tests across apps."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (and so a closed one, until someone binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def close_circuits() -> None:
    """Close the connectors' circuit breakers: an earlier test's (or Hypothesis example's) timeouts
    (card 4000000000007726) must not reroute the next payments to another connector."""
    from django.core.cache import cache

    keys = [f"payments:circuit:{c}:{what}" for c in ("alpha", "beta", "zeta") for what in ("fails", "open")]
    try:
        cache.delete_many(keys)
    except Exception:  # noqa: BLE001 - no cache reachable: nothing to reset
        pass
