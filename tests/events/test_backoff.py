import random
from datetime import UTC, datetime, timedelta

from payera.events.backoff import RetryPolicy, next_attempt

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_delays_grow_exponentially_with_bounded_jitter_and_a_cap():
    policy = RetryPolicy(base_seconds=60, factor=2, max_seconds=3600, jitter=0.25)
    rand = random.Random(7)
    for failures, nominal in [(1, 60), (2, 120), (3, 240), (6, 1920), (7, 3600), (30, 3600)]:
        delays = {policy.delay(failures, rand) for _ in range(50)}
        assert all(nominal * 0.75 <= d <= nominal * 1.25 for d in delays)
        assert len(delays) > 1  # jittered: retries of many deliveries do not stampede together


def test_the_horizon_ends_in_a_last_try_at_the_deadline_then_a_dead_letter():
    policy = RetryPolicy(base_seconds=3600, max_seconds=6 * 3600, horizon_seconds=86400, jitter=0)
    near_end = T0 + timedelta(hours=23)
    assert next_attempt(policy=policy, failures=10, window_started_at=T0, now=near_end) == T0 + timedelta(days=1)
    assert next_attempt(policy=policy, failures=11, window_started_at=T0, now=T0 + timedelta(days=1)) is None
    assert next_attempt(policy=policy, failures=1, window_started_at=T0, now=T0) == T0 + timedelta(hours=1)
