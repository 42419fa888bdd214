"""One delivery attempt has a total time limit, not only a limit per read.

httpx's timeouts apply to each socket read, so an endpoint that dribbles its answer — a byte of its
status line or headers, or of its body, every fraction of the timeout — kept the sending thread for
as long as it liked (a 2 KB body at a byte per 9 s: five hours). The attempt's lease (connect +
timeout + 15 s) ran out meanwhile, so the endpoint's concurrency slot counted as free and the next
deliveries were claimed by more worker threads, to be held the same way: one merchant's endpoint
could take every thread of every worker, delaying all merchants' webhooks (docs/webhooks.md: "a slow
endpoint delays its own events, never other merchants'")."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from payera.events.models import DeliveryStatus, WebhookDelivery
from payera.events.services import event_relay, webhook_deliver, webhook_endpoint_create
from tests.events.helpers import record

pytestmark = pytest.mark.django_db(transaction=True)


class DribblingEndpoint:
    """A real loopback endpoint that reads the request, then sends `head` at once and `dribble` one
    byte every `interval` seconds (for `dribble_seconds` at most), then closes."""

    def __init__(self, *, head: bytes, dribble: bytes, interval: float = 0.05, dribble_seconds: float = 6.0):
        self.head, self.dribble, self.interval, self.dribble_seconds = head, dribble, interval, dribble_seconds
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/hooks/payera"

    def _serve(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(v)
                for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))
                if k.strip().lower() == b"content-length"
            )
            while len(body) < length:
                body += conn.recv(65536)
            self.requests += 1
            try:
                conn.sendall(self.head)
                ends = time.monotonic() + self.dribble_seconds
                for i in range(len(self.dribble)):
                    if time.monotonic() > ends or self._stop.is_set():
                        break
                    conn.sendall(self.dribble[i : i + 1])
                    time.sleep(self.interval)
            except OSError:  # the sender gave up: expected
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._listener.close()


@pytest.fixture
def dribbling():
    made: list[DribblingEndpoint] = []

    def make(**kwargs) -> DribblingEndpoint:
        made.append(DribblingEndpoint(**kwargs))
        return made[-1]

    yield make
    for endpoint in made:
        endpoint.close()


def _deliver_timed(url: str, merchant_id: str) -> tuple[str, float, WebhookDelivery]:
    webhook_endpoint_create(merchant_id=merchant_id, url=url, enabled_events=["*"])
    [delivery_id] = event_relay(event_id=record(merchant_id).id)
    t0 = time.monotonic()
    outcome = webhook_deliver(delivery_id=delivery_id)
    return outcome, time.monotonic() - t0, WebhookDelivery.objects.get(pk=delivery_id)


@pytest.fixture
def short_timeouts(settings, enqueued):
    settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS = 0.5
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5  # each byte below comes well within it: only a total limit stops them


def test_an_endpoint_dribbling_its_status_line_and_headers_fails_at_the_deadline(short_timeouts, dribbling):
    endpoint = dribbling(
        head=b"HTTP/1.1 200 OK\r\n", dribble=b"Content-Type: application/json\r\nX-Padding: " + b"x" * 400 + b"\r\n\r\n"
    )
    outcome, took, delivery = _deliver_timed(endpoint.url, "mer_dribble_head")
    assert took < 2.5, f"the attempt took {took:.1f} s with a 1 s limit (connect + answer)"
    assert outcome == "failed" and delivery.status == DeliveryStatus.FAILED
    attempt = delivery.attempts.get()
    assert attempt.status_code is None and attempt.error.startswith("timeout")


def test_an_endpoint_dribbling_its_body_after_a_2xx_is_cut_at_the_deadline(short_timeouts, dribbling):
    """Its status arrived in time: the delivery succeeded (the merchant has the event); only the
    rest of the body, kept for the admin's attempt log, is cut at the deadline."""
    endpoint = dribbling(
        head=b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2048\r\n\r\n", dribble=b"y" * 2048
    )
    outcome, took, delivery = _deliver_timed(endpoint.url, "mer_dribble_body")
    assert took < 2.5, f"the attempt took {took:.1f} s with a 1 s limit (connect + answer)"
    assert outcome == "succeeded" and delivery.status == DeliveryStatus.SUCCEEDED
    attempt = delivery.attempts.get()
    assert attempt.status_code == 200 and len(attempt.response_body) < 2048
