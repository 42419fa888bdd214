"""Circuit breaker per connector, on the shared cache (Redis in production):
PAYMENTS_CIRCUIT_THRESHOLD technical failures (the PSP unreachable, a 5xx or 429, refused
credentials, a timeout, a technical decline: counted by `_confirm_attempts`) within
PAYMENTS_CIRCUIT_WINDOW seconds open the circuit for PAYMENTS_CIRCUIT_COOLDOWN seconds; routing
then tries that connector last."""

from __future__ import annotations

import logging

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


def circuit_record_failure(connector: str) -> None:
    window = getattr(settings, "PAYMENTS_CIRCUIT_WINDOW", 60)
    threshold = getattr(settings, "PAYMENTS_CIRCUIT_THRESHOLD", 5)
    cooldown = getattr(settings, "PAYMENTS_CIRCUIT_COOLDOWN", 30)
    try:
        key = _key(connector, "fails")
        cache.add(key, 0, timeout=window)
        fails = cache.incr(key)
        if fails >= threshold:
            cache.set(_key(connector, "open"), 1, timeout=cooldown)
            logger.warning("circuit open for %s after %s technical failures", connector, fails)
    except Exception:
        logger.warning("circuit breaker cache unavailable", exc_info=True)
