"""Small helpers shared by tests across apps."""

from __future__ import annotations

import contextlib
import socket


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (and so a closed one, until someone binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def close_circuits() -> None:
    """Close the connectors' circuit breakers: an earlier test's (or Hypothesis example's) timeouts
    (card 4000000000007726) must not reroute the next payments to another connector."""
    from payments.circuit import circuit_reset

    circuit_reset(["alpha", "beta", "zeta"])  # no cache reachable: nothing to reset (it logs)


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


@contextlib.contextmanager
def standin_psp(answer):
    """A stand-in for a PSP (a PSP is outside the machine) on a loopback port, for the answers the
    sandboxes never give. `answer(method, path, body)` returns `(status, body)`: a dict or list is
    sent as JSON, bytes as they are; `body` is the request's JSON (or None). Yields `(url, seen)`,
    `seen` listing the `(method, path)` of every request."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append((self.command, self.path))
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = answer(self.command, self.path, json.loads(raw) if raw else None)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/csv" if isinstance(body, bytes) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer  # noqa: N815

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def psp_at(settings, name: str, url: str) -> None:
    """Point connector `name` at `url` for this test: pytest-django's `settings` restores it, and
    each change of the setting drops the built adapters (psp_adapters.registry)."""
    conf = settings.PSP_CONNECTORS[name]
    options = {**conf["OPTIONS"], "base_url": url}
    settings.PSP_CONNECTORS = {**settings.PSP_CONNECTORS, name: {**conf, "OPTIONS": options}}


def walk_list(client, path: str, *, stop_at: set[str] | None = None, limit: int = 1) -> list[dict]:
    """A merchant syncing a list (`/v1/events`, `/v1/payments`, …): newest first, page by
    page with `starting_after`; with `stop_at`, stop at the first id already known (an incremental
    sync). The rows seen, in order."""
    seen: list[dict] = []
    cursor = None
    while True:
        url = f"{path}?limit={limit}" + (f"&starting_after={cursor}" if cursor else "")
        page = client.get(url)
        assert page.status_code == 200, page.content
        body = page.json()
        for row in body["data"]:
            if stop_at is not None and row["id"] in stop_at:
                return seen
            seen.append(row)
        if not body["has_more"] or not body["data"]:
            return seen
        cursor = body["data"][-1]["id"]


@contextlib.contextmanager
def held_open(work):
    """`work()` in a transaction of another thread, kept open (written, not committed) while the
    with-block runs and committed after it, or when the with-block calls the function it is given
    (`as commit`); the thread's error, if any, fails the test. The commit-order tests: a row stamped
    now that commits later."""
    import threading

    from django.db import connection, transaction

    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def body() -> None:
        try:
            with transaction.atomic():
                work()
                held.set()
                assert release.wait(60)
        except BaseException as exc:  # noqa: BLE001 (surfaced to the test)
            errors.append(exc)
        finally:
            connection.close()

    def commit() -> None:  # now, inside the with-block
        release.set()
        thread.join(60)

    thread = threading.Thread(target=body)
    thread.start()
    try:
        assert held.wait(30), errors
        yield commit
    finally:
        release.set()
        thread.join(60)
    assert errors == []


TEST_CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def held_booking(merchant, *, amount: int = 10_000, reference: str = "stay", number: str | None = None):
    """A booking of `amount` EUR held (for ten minutes) on an approving test card (or the sandbox card
    `number`), through the bookings service."""
    import time

    from payments.services.bookings import booking_create

    card = {**TEST_CARD, "card": {**TEST_CARD["card"], "number": number}} if number else TEST_CARD
    return booking_create(merchant=merchant, amount=amount, currency="EUR", reference=reference,
                          hold_expires_at=int(time.time()) + 600, payment_method_data=card)  # fmt: skip


def confirmed_booking(merchant, *, amount: int = 10_000, reference: str = "stay", number: str | None = None):
    """A booking of `amount` EUR held on an approving test card (or the sandbox card `number`) and
    confirmed (its escrow captured), through the bookings service; answered fresh from the database."""
    from payments.models import Booking
    from payments.services.bookings import booking_confirm

    booking = held_booking(merchant, amount=amount, reference=reference, number=number)
    booking_confirm(merchant=merchant, booking_id=booking.id)
    booking = Booking.objects.get(pk=booking.id)
    assert booking.status == "confirmed"
    return booking


def authorized_payment(merchant, *, amount: int = 1000):
    """A card payment authorized for a manual capture (`requires_capture`), through the services."""
    from payments.models import PaymentStatus
    from payments.services import payment_create

    payment = payment_create(
        merchant=merchant, amount=amount, currency="EUR", payment_method_data=TEST_CARD, capture_method="manual"
    )
    assert payment.status == PaymentStatus.REQUIRES_CAPTURE
    return payment


def event_types(merchant) -> list[str]:
    """The merchant's event types, oldest first."""
    from payera.events.models import Event

    return list(Event.objects.filter(merchant_id=merchant.id).order_by("created_at").values_list("type", flat=True))
