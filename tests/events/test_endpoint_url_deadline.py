"""Creating or updating a webhook endpoint resolves its URL's host within a time limit.

The SSRF check of `webhook_endpoint_create` / `_update` looked the host up in the request thread
with no limit: a merchant whose host's name server hangs held a web thread (gthread) for as long as
the resolver took (a minute or more per request, and as many threads as requests sent). The check
now uses the delivery path's bounded resolution (a resolver thread of its own, at most
MAX_RESOLVER_THREADS_PER_HOST for one host, waited for WEBHOOK_URL_RESOLVE_TIMEOUT_SECONDS): a host
not resolved in time is a 400 on `url`, and nothing is stored."""

from __future__ import annotations

import threading
import time

import pytest

from payera.core.errors import InvalidRequestError
from payera.events.models import WebhookEndpoint
from payera.events.services import webhook_endpoint_create, webhook_endpoint_update
from tests.events.test_delivery_deadline import SlowResolver

pytestmark = pytest.mark.django_db

HUNG = "hung-dns.merchant.test"


@pytest.fixture
def hung_resolver(monkeypatch, settings):
    """The name server of HUNG answers after 3 s; every other lookup is the real one. Waits at the
    end for the resolver threads the test left (their answer unused)."""
    settings.WEBHOOK_URL_RESOLVE_TIMEOUT_SECONDS = 0.3
    resolver = SlowResolver(monkeypatch, HUNG, delay=3.0)
    yield resolver
    for thread in threading.enumerate():
        if thread.name == "webhook-resolve":
            thread.join(10)


def test_create_with_a_host_whose_dns_hangs_is_a_400_in_time_and_stores_nothing(merchant_client, hung_resolver):
    t0 = time.monotonic()
    response = merchant_client.post(
        "/v1/webhook_endpoints",
        {"url": f"https://{HUNG}/hooks", "enabled_events": ["*"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="we-hung-dns",
    )
    took = time.monotonic() - t0
    assert took < 1.5, f"the request held its thread {took:.1f} s with a 0.3 s limit"
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == "url" and error["code"] == "url_resolution_timeout"
    assert HUNG in error["message"] and "in time" in error["message"]
    assert hung_resolver.lookups == 1
    assert not WebhookEndpoint.objects.exists()


def test_update_to_a_host_whose_dns_hangs_is_a_400_in_time_and_changes_nothing(hung_resolver):
    endpoint = webhook_endpoint_create(
        merchant_id="mer_hung_dns", url="http://127.0.0.1:9/hook", enabled_events=["*"]
    ).endpoint
    t0 = time.monotonic()
    with pytest.raises(InvalidRequestError) as exc:
        webhook_endpoint_update(
            merchant_id="mer_hung_dns", endpoint_id=endpoint.pk, url=f"https://{HUNG}/hooks", description="new"
        )
    assert time.monotonic() - t0 < 1.5
    assert exc.value.http_status == 400 and exc.value.param == "url" and exc.value.code == "url_resolution_timeout"
    row = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert row.url == "http://127.0.0.1:9/hook" and row.description == ""


def test_repeated_creates_for_the_hung_host_hold_at_most_its_share_of_resolver_threads(hung_resolver, monkeypatch):
    """Each request gives up at the limit, its lookup left running; once the host's lookups hold
    MAX_RESOLVER_THREADS_PER_HOST threads, further requests for it start none (still 400 in time),
    and a healthy host of another merchant still resolves at once. The same merchant's healthy host
    still resolves while one of its hosts hangs (the merchant's share is larger than one host's);
    once its hung lookups of several hosts hold its share (MAX_RESOLVER_THREADS_PER_MERCHANT, every
    host of a merchant together) it waits until they end: 400 `url_resolution_timeout` saying so."""
    from payera.events import ssrf

    assert ssrf.MAX_RESOLVER_THREADS_PER_HOST >= 1
    for _ in range(ssrf.MAX_RESOLVER_THREADS_PER_HOST + 2):
        t0 = time.monotonic()
        with pytest.raises(InvalidRequestError) as exc:
            webhook_endpoint_create(merchant_id="mer_hung_dns", url=f"https://{HUNG}/hooks", enabled_events=["*"])
        assert time.monotonic() - t0 < 1.5 and exc.value.code == "url_resolution_timeout"
    assert hung_resolver.lookups == ssrf.MAX_RESOLVER_THREADS_PER_HOST
    assert not WebhookEndpoint.objects.exists()
    SlowResolver(monkeypatch, "healthy-dns.merchant.test", delay=0.0)
    webhook_endpoint_create(merchant_id="mer_hung_dns", url="https://healthy-dns.merchant.test/h", enabled_events=["*"])
    others = [f"h{i}.{HUNG}" for i in range(ssrf.MAX_RESOLVER_THREADS_PER_MERCHANT)]
    for host in others:
        SlowResolver(monkeypatch, host, delay=3.0)
        with pytest.raises(InvalidRequestError):
            webhook_endpoint_create(merchant_id="mer_hung_dns", url=f"https://{host}/hooks", enabled_events=["*"])
    with pytest.raises(InvalidRequestError) as exc:
        webhook_endpoint_create(
            merchant_id="mer_hung_dns", url="https://healthy-dns.merchant.test/h2", enabled_events=["*"]
        )
    assert exc.value.code == "url_resolution_timeout" and "earlier lookups of this account" in exc.value.message
    webhook_endpoint_create(merchant_id="mer_other", url="https://healthy-dns.merchant.test/h", enabled_events=["*"])
    assert WebhookEndpoint.objects.count() == 2


def test_no_resolver_thread_free_is_a_503_to_retry_not_a_400_on_the_url(hung_resolver, monkeypatch):
    """Every resolver thread held by other hosts' hung lookups is our failure, not the URL's: 503
    (before any work, so an Idempotency-Key is released for the retry), nothing stored."""
    from payera.core.errors import ServiceUnavailableError
    from payera.events import ssrf

    hosts = [f"hung{i}.attacker.test" for i in range(ssrf.MAX_RESOLVER_THREADS)]
    for host in hosts:
        SlowResolver(monkeypatch, host, delay=3.0)
        with pytest.raises(ssrf.ResolutionTimeout):
            ssrf.check_url_within(f"https://{host}/hooks", 0.01)
    SlowResolver(monkeypatch, "healthy-dns.merchant.test", delay=0.0)
    with pytest.raises(ServiceUnavailableError) as exc:
        webhook_endpoint_create(
            merchant_id="mer_busy_dns", url="https://healthy-dns.merchant.test/h", enabled_events=["*"]
        )
    assert exc.value.http_status == 503
    assert not WebhookEndpoint.objects.exists()
