"""Circuit breaker per connector, on the shared cache (Redis in production):
PAYMENTS_CIRCUIT_THRESHOLD technical failures (the PSP unreachable, a 5xx or 429, refused
credentials, a timeout, a technical decline: counted by `_confirm_attempts`) within
PAYMENTS_CIRCUIT_WINDOW seconds (counted in quarters: the last window, and at most a quarter more)
open the circuit for PAYMENTS_CIRCUIT_COOLDOWN seconds; routing then tries that connector last."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger("payera.payments")


def _key(connector: str, what: str) -> str:
    return f"payments:circuit:{connector}:{what}"


def circuit_open_set(connectors: list[str]) -> frozenset[str]:
    try:
        found = cache.get_many([_key(c, "open") for c in connectors])
    except Exception:  # the cache is an optimisation: never fail a payment on it
        logger.warning("circuit breaker cache unavailable", exc_info=True)
        return frozenset()
    return frozenset(c for c in connectors if found.get(_key(c, "open")))


def _window() -> int:
    return max(1, int(getattr(settings, "PAYMENTS_CIRCUIT_WINDOW", 60)))


# Failures are counted in quarters of the window, each quarter in a key of its own (below); the
# count is the current quarter and the four before it: every failure of the last window counts, and
# none older than a window and a quarter. One key per whole window split a burst at its boundary.
_QUARTERS = 4


def _bucket(window: int) -> int:
    return int(time.time() * _QUARTERS // window)


def _fails_key(connector: str, bucket: int) -> str:
    """The failures of one quarter of the window (`bucket` = unix time * 4 // window) are counted
    in a key of their own: whether a backend's `incr` keeps the key's expiry (Redis's INCRBY does;
    Django's generic `incr`, e.g. the embedded default's FileBasedCache, re-sets it with the
    default timeout) can never stretch the window."""
    return _key(connector, f"fails:{bucket}")


def circuit_reset(connectors: Iterable[str]) -> None:
    """Close the connectors' circuits and forget their failures of the last window (tests and
    operations after an incident)."""
    bucket = _bucket(_window())
    keys = [_key(c, "open") for c in connectors]
    keys += [_fails_key(c, b) for c in connectors for b in range(bucket - _QUARTERS - 1, bucket + 2)]
    try:
        cache.delete_many(keys)
    except Exception:
        logger.warning("circuit breaker cache unavailable", exc_info=True)


def circuit_record_failure(connector: str) -> None:
    window = _window()
    threshold = getattr(settings, "PAYMENTS_CIRCUIT_THRESHOLD", 5)
    cooldown = getattr(settings, "PAYMENTS_CIRCUIT_COOLDOWN", 30)
    try:
        bucket = _bucket(window)
        key = _fails_key(connector, bucket)
        cache.add(key, 0, timeout=2 * window)  # outlives the count: never expires between add and incr
        fails = cache.incr(key)
        before = cache.get_many([_fails_key(connector, b) for b in range(bucket - _QUARTERS, bucket)])
        fails += sum(int(n) for n in before.values())
        if fails >= threshold:
            cache.set(_key(connector, "open"), 1, timeout=cooldown)
            logger.warning("circuit open for %s after %s technical failures", connector, fails)
    except Exception:
        logger.warning("circuit breaker cache unavailable", exc_info=True)
