"""Per-API-key rate limiting on the shared cache (Redis when served).

A fixed-window counter: one atomic `INCR` per request (with the window's expiry, in one script:
one round trip) on `throttle:api_key:<key id>:<window>`,
instead of DRF's sliding log (which stores one timestamp per request: a list of thousands of
entries to read and write at high rates). The rate is read at request time from
`REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["api_key"]` (e.g. "100/s"), so it can be changed per
environment and per test. Exceeding it raises DRF's `Throttled`, rendered as 429
`rate_limit_error` with `Retry-After`. If the cache is unreachable the request is let through
(and logged): a rate limiter must not take the API down with it.
"""

from __future__ import annotations

import logging
import time

from django.core.cache import cache, caches
from django_redis.cache import RedisCache
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from payera.merchants.models import ApiKey

logger = logging.getLogger("payera.api")

# the window's counter created with its expiry if missing, then incremented: what `cache.add`
# then `cache.incr` do in two round trips (django-redis stores an int as its digits, so the
# counter is the same key and value either way); EVALSHA after the first call
_COUNT_LUA = "redis.call('SET', KEYS[1], 0, 'NX', 'EX', ARGV[1]) return redis.call('INCR', KEYS[1])"
_count_script = None


class ApiKeyRateThrottle(BaseThrottle):
    scope = "api_key"

    def __init__(self) -> None:
        self._wait: float | None = None

    def get_rate(self) -> tuple[int | None, int | None]:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        return SimpleRateThrottle.parse_rate(None, rate)  # type: ignore[arg-type]

    def allow_request(self, request, view) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True  # nothing to count against (unauthenticated requests fail before this)
        num, duration = self.get_rate()
        if not num or not duration:
            return True
        now = time.time()
        window = int(now // duration)
        key = f"throttle:{self.scope}:{api_key.id}:{duration}:{window}"
        try:
            count = self._count(key, duration)
        except Exception:  # cache down: fail open
            logger.warning("rate limit cache unavailable; request not counted", exc_info=True)
            return True
        if count > num:
            self._wait = (window + 1) * duration - now
            return False
        return True

    @staticmethod
    def _count(key: str, duration: int) -> int:
        backend = caches["default"]
        if isinstance(backend, RedisCache):  # served: one round trip, one atomic script
            client = backend.client.get_client(write=True)
            global _count_script
            if _count_script is None:
                _count_script = client.register_script(_COUNT_LUA)  # run on the client it is given
            return int(_count_script(keys=[backend.make_key(key)], args=[duration + 1], client=client))
        cache.add(key, 0, timeout=duration + 1)
        try:
            return cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=duration + 1)
            return 1

    def wait(self) -> float | None:
        return self._wait
