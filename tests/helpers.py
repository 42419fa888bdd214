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


def race(n: int, call, *, timeout: float = 60) -> list:
    """Run `call()` in n threads released together by a barrier (real concurrency against the
    database: each thread has its own connection, closed at its end). Returns the n results;
    any thread's exception is raised here."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(n)
    results: list = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            result = call()
            with lock:
                results.append(result)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not errors, errors
    assert len(results) == n, f"{n - len(results)} threads did not finish"
    return results
