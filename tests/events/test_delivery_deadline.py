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


def _deliver_timed(url: str, merchant_id: str, *, then=None) -> tuple[str, float, WebhookDelivery]:
    """Create the endpoint, relay an event to it, call `then()` (the endpoint's DNS turning slow…),
    and deliver: the outcome, the time the delivery took, the delivery."""
    webhook_endpoint_create(merchant_id=merchant_id, url=url, enabled_events=["*"])
    [delivery_id] = event_relay(event_id=record(merchant_id).id)
    if then is not None:
        then()
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


class SlowResolver:
    """`socket.getaddrinfo` standing in for a DNS server that answers `name` after `delay` seconds
    (a resolver is outside the machine's control); every other lookup is the real one."""

    def __init__(self, monkeypatch, name: str, delay: float, address: str = "127.0.0.1") -> None:
        self.name, self.delay, self.address, self.lookups = name, delay, address, 0
        self._real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host, port, *args, **kwargs):
        if host != self.name:
            return self._real(host, port, *args, **kwargs)
        self.lookups += 1
        time.sleep(self.delay)
        return self._real(self.address, port, *args, **kwargs)


def test_a_slow_name_resolution_ends_at_the_deadline_as_a_timeout_to_retry(short_timeouts, receivers, monkeypatch):
    """The deadline's timer started after the URL was resolved (the SSRF check at send time), so a
    resolver taking its time held the delivery thread for as long as it took (here 6 s with a 1 s
    limit and a 16 s lease; a resolver retrying for a minute, past the lease: the endpoint's slot
    counted as free while the thread was still held). The deadline now covers the resolution.
    (The host resolved at once when the endpoint was created: creation bounds its lookup too.)"""
    rx = receivers()
    resolver = SlowResolver(monkeypatch, "slow-dns.merchant.test", delay=0.0)
    outcome, took, delivery = _deliver_timed(
        f"http://slow-dns.merchant.test:{rx.port}/hooks", "mer_slow_dns", then=lambda: setattr(resolver, "delay", 6.0)
    )
    assert resolver.lookups == 2  # at creation and at send time
    assert took < 2.5, f"the attempt took {took:.1f} s with a 1 s limit (resolution + connect + answer)"
    assert outcome == "failed" and delivery.status == DeliveryStatus.FAILED
    assert delivery.next_attempt_at is not None and delivery.lease_until is None  # retried, not held
    attempt = delivery.attempts.get()
    assert attempt.status_code is None and attempt.error.startswith("timeout")
    assert rx.requests == []


def test_a_resolution_within_the_deadline_still_delivers_to_the_checked_address(
    short_timeouts, receivers, monkeypatch, settings
):
    """The resolution in its own thread changes nothing else: the address the SSRF check saw is the
    one connected to, with the original Host header; a private one is still refused."""
    rx = receivers()
    SlowResolver(monkeypatch, "quick-dns.merchant.test", delay=0.2)
    outcome, took, delivery = _deliver_timed(f"http://quick-dns.merchant.test:{rx.port}/hooks", "mer_quick_dns")
    assert outcome == "succeeded", delivery.attempts.get().error
    assert rx.requests[0].headers["Host"] == f"quick-dns.merchant.test:{rx.port}"
    webhook_endpoint_create(
        merchant_id="mer_quick_dns2", url=f"http://quick-dns.merchant.test:{rx.port}/hooks", enabled_events=["*"]
    )
    [delivery_id] = event_relay(event_id=record("mer_quick_dns2").id)
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False  # 127.0.0.1 is private: refused at send time
    assert webhook_deliver(delivery_id=delivery_id) == "failed"
    assert WebhookDelivery.objects.get(pk=delivery_id).attempts.get().error.startswith("url_forbidden")
    assert len(rx.requests) == 1


@pytest.fixture
def hung_lookups(monkeypatch):
    """`hung_lookups(hosts, per_host)` starts `per_host` sends to each of `hosts`, whose resolver
    answers after 4 s, and lets each give up at once: their resolver threads stay, holding their slots
    (as sends to a name whose DNS server never answers do). Waits for those threads at the end, and
    for any an earlier test left, first."""
    from payera.events import ssrf

    def wait_for_resolver_threads() -> None:
        for thread in threading.enumerate():
            if thread.name == "webhook-resolve":
                thread.join(10)

    wait_for_resolver_threads()

    def start(hosts: list[str], per_host: int) -> None:
        for host in hosts:
            SlowResolver(monkeypatch, host, delay=4.0)
        for host in hosts:
            for _ in range(per_host):
                with pytest.raises(ssrf.ResolutionTimeout):
                    ssrf.check_url_within(f"https://{host}/hooks", 0.01)

    yield start
    wait_for_resolver_threads()


def test_hung_lookups_of_one_host_do_not_starve_other_hosts(short_timeouts, receivers, monkeypatch, hung_lookups):
    """All 16 resolver threads of a process could be taken by lookups of one name whose DNS server
    hangs (one merchant's endpoint): every other merchant's delivery then found no thread free and
    failed as "the host did not resolve", its endpoint charged with the failure (and disabled after
    days of it). One host's lookups now hold at most MAX_RESOLVER_THREADS_PER_HOST of them."""
    from payera.events import ssrf

    rx = receivers()
    hung_lookups(["hung-dns.attacker.test"], ssrf.MAX_RESOLVER_THREADS)
    SlowResolver(monkeypatch, "healthy-dns.merchant.test", delay=0.0)
    outcome, took, delivery = _deliver_timed(f"http://healthy-dns.merchant.test:{rx.port}/hooks", "mer_healthy_dns")
    assert outcome == "succeeded", delivery.attempts.get().error
    assert len(rx.requests) == 1


def test_no_resolver_thread_free_is_not_charged_to_the_endpoint(short_timeouts, receivers, monkeypatch, hung_lookups):
    """When hung lookups of many hosts hold every resolver thread, a send to a healthy host that
    finds none free within its deadline is retried, but the failure is ours, not its endpoint's: it
    was charged to the endpoint's failure streak (which disables the endpoint after days of it) and
    recorded as "the host did not resolve" although its host was never looked up."""
    from payera.events.models import WebhookEndpoint

    rx = receivers()
    SlowResolver(monkeypatch, "healthy-dns.merchant.test", delay=0.0)
    outcome, took, delivery = _deliver_timed(
        f"http://healthy-dns.merchant.test:{rx.port}/hooks",
        "mer_starved_dns",
        then=lambda: hung_lookups([f"hung{i}.attacker.test" for i in range(16)], 1),
    )
    assert outcome == "failed" and delivery.next_attempt_at is not None and delivery.lease_until is None
    assert took < 2.5
    attempt = delivery.attempts.get()
    assert attempt.error.startswith("timeout") and "did not resolve" not in attempt.error, attempt.error
    endpoint = WebhookEndpoint.objects.get(merchant_id="mer_starved_dns")
    assert endpoint.consecutive_failures == 0 and endpoint.failing_since is None
    assert rx.requests == []


def test_one_merchants_hung_lookups_of_many_host_names_do_not_starve_other_merchants(
    short_timeouts, receivers, monkeypatch, settings, hung_lookups
):
    """The cap of MAX_RESOLVER_THREADS_PER_HOST was per host name: a merchant naming many hosts
    whose DNS server hangs (a.hung.test, b.hung.test, ... any subdomain of a zone it controls) took
    every resolver thread of the process with a few endpoint creations, so every other merchant's
    deliveries found none free and were only retried, none of them sent while the lookups hung. A
    merchant's lookups (endpoint creation and its deliveries) now hold at most
    MAX_RESOLVER_THREADS_PER_MERCHANT threads; its further ones time out as its own fault."""
    from payera.core.errors import InvalidRequestError
    from payera.events import ssrf
    from payera.events.models import WebhookEndpoint

    rx = receivers()
    SlowResolver(monkeypatch, "healthy-dns.merchant.test", delay=0.0)
    own = webhook_endpoint_create(
        merchant_id="mer_hung_dns", url=f"http://healthy-dns.merchant.test:{rx.port}/own", enabled_events=["*"]
    )
    hosts = [f"h{i}.hung.attacker.test" for i in range(ssrf.MAX_RESOLVER_THREADS)]
    hung_lookups(hosts, 0)  # their resolvers answer after 4 s; no lookup started yet
    settings.WEBHOOK_URL_RESOLVE_TIMEOUT_SECONDS = 0.01
    refused = []
    for host in hosts:
        with pytest.raises(InvalidRequestError) as caught:
            webhook_endpoint_create(merchant_id="mer_hung_dns", url=f"https://{host}/hooks", enabled_events=["*"])
        refused.append(caught.value.code)
    assert set(refused) == {"url_resolution_timeout"}  # its own lookups: its fault, not "busy"
    settings.WEBHOOK_URL_RESOLVE_TIMEOUT_SECONDS = 5  # the other merchant's creation: a normal limit
    outcome, took, delivery = _deliver_timed(f"http://healthy-dns.merchant.test:{rx.port}/hooks", "mer_other_dns")
    assert outcome == "succeeded", delivery.attempts.get().error
    assert len(rx.requests) == 1
    # the merchant's own healthy endpoint waits for its hung lookups: retried, not charged to it
    [delivery_id] = event_relay(event_id=record("mer_hung_dns").id)
    assert webhook_deliver(delivery_id=delivery_id) == "failed"
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.next_attempt_at is not None and "other webhook hosts" in delivery.attempts.get().error
    endpoint = WebhookEndpoint.objects.get(pk=own.endpoint.id)
    assert endpoint.consecutive_failures == 0 and endpoint.failing_since is None
    assert len(rx.requests) == 1


def test_one_hung_endpoint_of_a_merchant_does_not_stop_its_other_endpoints(
    short_timeouts, receivers, monkeypatch, hung_lookups
):
    """The merchant's share of the resolver threads (MAX_RESOLVER_THREADS_PER_MERCHANT) was 4, the
    same as one host's (MAX_RESOLVER_THREADS_PER_HOST): the lookups of a single endpoint whose DNS
    server hangs (a stale staging endpoint, its deliveries started at the merchant's event rate)
    filled it, so every delivery to the merchant's other, healthy endpoints was retried as "the
    merchant's other webhook hosts' lookups hang" for as long as that one host hung (days, until it
    was disabled; they were dead-lettered meanwhile), and the merchant could not even change the
    hung endpoint's url to a working host (400 url_resolution_timeout). Before the per-merchant cap
    one hung host never stopped a merchant's other endpoints. The merchant's share is now larger
    than one host's, so one hung host leaves room for its other hosts."""
    from payera.events import ssrf

    rx = receivers()
    SlowResolver(monkeypatch, "prod-dns.merchant.test", delay=0.0)
    webhook_endpoint_create(
        merchant_id="mer_one_hung", url=f"http://prod-dns.merchant.test:{rx.port}/hooks", enabled_events=["*"]
    )
    hung_lookups(["staging.hung.merchant.test"], 0)  # its resolver answers after 4 s
    for _ in range(ssrf.MAX_RESOLVER_THREADS_PER_HOST):  # its deliveries' lookups, left hanging
        with pytest.raises(ssrf.ResolutionTimeout) as caught:
            ssrf.check_url_within("https://staging.hung.merchant.test/hooks", 0.01, merchant_id="mer_one_hung")
        assert type(caught.value) is ssrf.ResolutionTimeout  # the hung host's own fault
    [delivery_id] = event_relay(event_id=record("mer_one_hung").id)
    assert webhook_deliver(delivery_id=delivery_id) == "succeeded", (
        WebhookDelivery.objects.get(pk=delivery_id).attempts.get().error
    )
    assert len(rx.requests) == 1
    # and the hung endpoint's url can be changed to a host that resolves
    parsed, _ = ssrf.check_url_within(
        f"http://prod-dns.merchant.test:{rx.port}/other", 1.0, merchant_id="mer_one_hung"
    )
    assert parsed.host == "prod-dns.merchant.test"
