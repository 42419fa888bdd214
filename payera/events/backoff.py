"""Retry schedule of webhook deliveries: exponential backoff with jitter, bounded by a horizon.

Pure: no clock, no randomness source of its own (both are passed in), so it is tested as is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = 60.0  # delay after the first failure
    factor: float = 2.0
    max_seconds: float = 6 * 3600.0  # no gap longer than this
    horizon_seconds: float = 3 * 86400.0  # then dead-lettered
    jitter: float = 0.25  # +- fraction of the delay

    def delay(self, failures: int, rand: random.Random | None = None) -> float:
        """Seconds to wait after the `failures`-th consecutive failure (1-based)."""
        raw = self.base_seconds * self.factor ** max(failures - 1, 0)
        capped = min(raw, self.max_seconds)
        r = (rand or random).uniform(-self.jitter, self.jitter)
        return max(capped * (1 + r), 0.0)


def next_attempt(
    *, policy: RetryPolicy, failures: int, window_started_at: datetime, now: datetime, rand: random.Random | None = None
) -> datetime | None:
    """When to try again after a failure, or None when the horizon is over (dead letter).

    The last try happens at the horizon itself rather than being skipped because the backoff
    step would overshoot it.
    """
    deadline = window_started_at + timedelta(seconds=policy.horizon_seconds)
    if now >= deadline:
        return None
    return min(now + timedelta(seconds=policy.delay(failures, rand)), deadline)
