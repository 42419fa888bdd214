"""The circuit breaker's window holds on every cache backend, the embedded default's too.

What was wrong: `circuit_record_failure` counted failures in one key created with
`cache.add(key, 0, timeout=PAYMENTS_CIRCUIT_WINDOW)` and then `cache.incr(key)`, relying on the
increment keeping the key's expiry. Redis's INCRBY does; Django's generic `incr` (the
FileBasedCache of the embedded default, `make run`) does not: it re-sets the key with the
backend's default timeout (300 s) on every failure. The window then never ended while failures
kept coming less than five minutes apart, so five sporadic failures spread over hours opened the
connector's circuit (and routed its merchants' payments elsewhere first) — "5 technical failures
in 60 s" was no longer what opened it. Failures are now counted per window in a key named for
that window, so no backend's expiry handling can stretch it.
"""

from __future__ import annotations

import time

import pytest

from payments.circuit import circuit_open_set, circuit_record_failure, circuit_reset


@pytest.fixture
def file_cache(settings, tmp_path):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    settings.PAYMENTS_CIRCUIT_THRESHOLD = 3
    settings.PAYMENTS_CIRCUIT_WINDOW = 1
    settings.PAYMENTS_CIRCUIT_COOLDOWN = 30
    circuit_reset(["omega"])
    yield
    circuit_reset(["omega"])


def test_failures_of_an_earlier_window_do_not_open_the_circuit(file_cache):
    circuit_record_failure("omega")
    circuit_record_failure("omega")
    time.sleep(1.3)  # the window (1 s) and the last quarter counted with it are over
    circuit_record_failure("omega")
    assert circuit_open_set(["omega"]) == frozenset()


def test_the_threshold_within_one_window_still_opens_it(file_cache):
    time.sleep(1 - time.time() % 1 + 0.01)  # at the start of a window: three failures fit in it
    for _ in range(3):
        circuit_record_failure("omega")
    assert circuit_open_set(["omega"]) == frozenset({"omega"})
    circuit_reset(["omega"])
    assert circuit_open_set(["omega"]) == frozenset()


def test_failures_on_both_sides_of_a_window_boundary_still_open_it(file_cache):
    """Per-window keys (above) split a burst at the window's boundary: the threshold's failures
    within one window's length, some before the boundary and some after, were counted in two keys
    and never opened the circuit (a connector timing out twice in 1.5 s stayed closed when the two
    fell either side of a minute). The count is now the last window's quarters together (between
    one window and a window and a quarter back), so failures within one window always count."""
    time.sleep(1 - time.time() % 1 + 0.9)  # 0.1 s before a boundary of the 1 s window
    circuit_record_failure("omega")
    circuit_record_failure("omega")
    time.sleep(0.2)  # past the boundary
    circuit_record_failure("omega")
    assert circuit_open_set(["omega"]) == frozenset({"omega"})
