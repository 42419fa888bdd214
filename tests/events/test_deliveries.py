"""Delivery services driven in this process (task publishing captured, time simulated)."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta

import pytest

from payera.core.errors import InvalidRequestError
from payera.events import clock, ssrf
from payera.events.errors import DeliveryNotReplayableError
from payera.events.models import DeliveryStatus, EndpointStatus, Event, WebhookDelivery
from payera.events.services import (
    delivery_replay,
    endpoint_replay_dead_letters,
    event_relay,
    webhook_deliver,
    webhook_endpoint_create,
    webhook_endpoint_roll_secret,
    webhook_retry_due,
)
from tests.events.helpers import docs_verifier, record

pytestmark = pytest.mark.django_db(transaction=True)

M = "mer_deliveries"


class FakeClock:
    def __init__(self, monkeypatch):
        self.at = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
        monkeypatch.setattr(clock, "now", lambda: self.at)

    def advance(self, **kwargs) -> None:
        self.at += timedelta(**kwargs)

    def to(self, at: datetime) -> None:
        self.at = max(self.at, at)


@pytest.fixture
def fake_clock(monkeypatch) -> FakeClock:
    return FakeClock(monkeypatch)


def _delivery_for(rx, enqueued, *, merchant_id=M, type="payment.succeeded", events=("*",)):  # noqa: A002
    created = webhook_endpoint_create(merchant_id=merchant_id, url=rx.url, enabled_events=list(events))
    event = record(merchant_id, type)
    [delivery_id] = event_relay(event_id=event.id)
    return created, WebhookDelivery.objects.get(pk=delivery_id)


def test_dead_letter_after_the_retry_horizon_then_replay_works_once(settings, fake_clock, enqueued, receivers):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 60
    settings.WEBHOOK_RETRY_MAX_SECONDS = 6 * 3600
    settings.WEBHOOK_RETRY_HORIZON_SECONDS = 3 * 86400
    settings.WEBHOOK_ENDPOINT_DISABLE_AFTER_SECONDS = 7 * 86400  # the endpoint stays enabled here
    rx = receivers(default_status=500)
    _, delivery = _delivery_for(rx, enqueued)
    start = fake_clock.at

    outcomes = []
    while True:
        delivery.refresh_from_db()
        if delivery.status == DeliveryStatus.DEAD:
            break
        fake_clock.to(delivery.next_attempt_at)
        outcomes.append(webhook_deliver(delivery_id=delivery.pk))
        assert len(outcomes) < 200
    assert outcomes[-1] == "dead" and set(outcomes[:-1]) == {"failed"}
    # exponential: the gaps grow, capped at 6 hours; the last try happens at the horizon itself
    attempts = list(delivery.attempts.order_by("number"))
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] < 100 and gaps[3] > 300 and max(gaps) <= 6 * 3600 * 1.25
    assert attempts[-1].started_at == start + timedelta(days=3)
    assert delivery.next_attempt_at is None and len(rx.requests) == len(attempts)
    assert webhook_deliver(delivery_id=delivery.pk) == "final"  # dead stays dead

    rx.default_status = 200
    delivery_replay(delivery_id=delivery.pk, merchant_id=M)
    assert webhook_deliver(delivery_id=delivery.pk) == "succeeded"
    with pytest.raises(DeliveryNotReplayableError) as exc:
        delivery_replay(delivery_id=delivery.pk)
    assert exc.value.param == "id"
    assert webhook_deliver(delivery_id=delivery.pk) == "final"
    assert [r.status for r in rx.requests].count(200) == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.replay_count == 1


def test_replay_of_another_merchants_delivery_is_not_found(enqueued, receivers):
    _, delivery = _delivery_for(receivers(), enqueued)
    with pytest.raises(InvalidRequestError) as exc:
        delivery_replay(delivery_id=delivery.pk, merchant_id="mer_someone_else")
    assert exc.value.http_status == 404


def test_endpoint_dead_letters_are_replayed_together(settings, fake_clock, enqueued, receivers):
    settings.WEBHOOK_RETRY_HORIZON_SECONDS = 0  # the first failure is final
    rx = receivers(default_status=500)
    created = webhook_endpoint_create(merchant_id=M, url=rx.url, enabled_events=["*"])
    ids = [event_relay(event_id=record(M).id)[0] for _ in range(3)]
    assert [webhook_deliver(delivery_id=i) for i in ids] == ["dead"] * 3
    rx.default_status = 204
    assert endpoint_replay_dead_letters(endpoint_id=created.endpoint.pk) == 3
    assert [webhook_deliver(delivery_id=i) for i in ids] == ["succeeded"] * 3


def test_retry_is_scheduled_with_countdown_and_found_by_the_sweep(settings, fake_clock, enqueued, receivers):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    settings.WEBHOOK_RETRY_JITTER = 0
    rx = receivers(statuses=[502])
    _, delivery = _delivery_for(rx, enqueued)
    enqueued.clear()
    assert webhook_deliver(delivery_id=delivery.pk) == "failed"
    [(name, args, countdown)] = enqueued
    assert name == "webhook_deliver_task" and args == (delivery.pk,) and countdown == pytest.approx(30.05)
    assert webhook_deliver(delivery_id=delivery.pk) == "not_due"
    enqueued.clear()
    assert webhook_retry_due() == 0
    fake_clock.advance(seconds=31)
    assert webhook_retry_due() == 1 and enqueued[0][1] == (delivery.pk,)
    assert webhook_deliver(delivery_id=delivery.pk) == "succeeded"


def test_a_second_run_of_the_task_does_nothing(fake_clock, enqueued, receivers):
    rx = receivers()
    _, delivery = _delivery_for(rx, enqueued)
    assert webhook_deliver(delivery_id=delivery.pk) == "succeeded"
    assert webhook_deliver(delivery_id=delivery.pk) == "final"
    assert webhook_deliver(delivery_id="whd_missing") == "missing"
    assert len(rx.requests) == 1


def test_in_flight_lease_blocks_a_duplicate_and_expires_after_a_crash(fake_clock, enqueued, receivers):
    rx = receivers()
    _, delivery = _delivery_for(rx, enqueued)
    # A worker claimed it and died mid-send (simulated: a lease with no recorded outcome).
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        lease_until=fake_clock.at + timedelta(seconds=30), next_attempt_at=fake_clock.at + timedelta(seconds=30)
    )
    assert webhook_deliver(delivery_id=delivery.pk) == "not_due"
    fake_clock.advance(seconds=31)
    assert webhook_deliver(delivery_id=delivery.pk) == "succeeded"
    assert len(rx.requests) == 1


def test_endpoint_at_its_concurrency_limit_defers_without_sending(settings, fake_clock, enqueued, receivers):
    settings.WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT = 1
    rx = receivers()
    created = webhook_endpoint_create(merchant_id=M, url=rx.url, enabled_events=["*"])
    first, second = (event_relay(event_id=record(M).id)[0] for _ in range(2))
    WebhookDelivery.objects.filter(pk=first).update(lease_until=fake_clock.at + timedelta(seconds=30))
    enqueued.clear()
    assert webhook_deliver(delivery_id=second) == "deferred"
    assert rx.requests == [] and enqueued[0][0] == "webhook_deliver_task" and enqueued[0][2] > 0
    assert WebhookDelivery.objects.get(pk=second).attempt_count == 0
    # another endpoint is not affected
    other = receivers()
    webhook_endpoint_create(merchant_id="mer_other", url=other.url, enabled_events=["*"])
    [other_delivery] = event_relay(event_id=record("mer_other").id)
    assert webhook_deliver(delivery_id=other_delivery) == "succeeded"
    WebhookDelivery.objects.filter(pk=first).update(lease_until=None)
    deferred_to = WebhookDelivery.objects.get(pk=second).next_attempt_at
    assert timedelta(0) < deferred_to - fake_clock.at <= timedelta(seconds=60)
    fake_clock.to(deferred_to)
    assert webhook_deliver(delivery_id=second) == "succeeded"
    assert created.endpoint.deliveries.filter(status=DeliveryStatus.SUCCEEDED).count() == 1


def test_during_a_roll_deliveries_carry_both_signatures_until_the_overlap_ends(fake_clock, enqueued, receivers):
    rx = receivers()
    created = webhook_endpoint_create(merchant_id=M, url=rx.url, enabled_events=["*"])
    rolled = webhook_endpoint_roll_secret(merchant_id=M, endpoint_id=created.endpoint.pk, overlap_hours=24)
    assert rolled.secret != created.secret and rolled.secret.startswith("whsec_")
    verify = docs_verifier()

    [d1] = event_relay(event_id=record(M).id)
    webhook_deliver(delivery_id=d1)
    got = rx.requests[-1]
    assert got.headers["Payera-Signature"].count("v1=") == 2
    assert verify(got.body, got.headers["Payera-Signature"], created.secret)
    assert verify(got.body, got.headers["Payera-Signature"], rolled.secret)

    fake_clock.advance(hours=25)
    [d2] = event_relay(event_id=record(M).id)
    webhook_deliver(delivery_id=d2)
    got = rx.requests[-1]
    assert got.headers["Payera-Signature"].count("v1=") == 1
    assert verify(got.body, got.headers["Payera-Signature"], rolled.secret)
    assert not verify(got.body, got.headers["Payera-Signature"], created.secret)


def test_endpoint_failing_for_days_is_disabled_and_the_merchant_gets_an_event(
    settings, fake_clock, enqueued, receivers
):
    settings.WEBHOOK_ENDPOINT_DISABLE_AFTER_SECONDS = 2 * 86400
    settings.WEBHOOK_ENDPOINT_DISABLE_MIN_FAILURES = 3
    settings.WEBHOOK_RETRY_BASE_SECONDS = 3600
    settings.WEBHOOK_RETRY_MAX_SECONDS = 12 * 3600
    broken, healthy = receivers(default_status=500), receivers()
    bad = webhook_endpoint_create(merchant_id=M, url=broken.url, enabled_events=["payment.*"]).endpoint
    webhook_endpoint_create(merchant_id=M, url=healthy.url, enabled_events=["webhook_endpoint.disabled"])
    [delivery_id] = event_relay(event_id=record(M).id)

    while True:
        bad.refresh_from_db()
        if bad.status == EndpointStatus.DISABLED:
            break
        fake_clock.to(WebhookDelivery.objects.get(pk=delivery_id).next_attempt_at)
        assert webhook_deliver(delivery_id=delivery_id) == "failed"
    assert bad.consecutive_failures >= 3 and bad.disabled_reason.startswith("failing since")
    notice = Event.objects.get(merchant_id=M, type="webhook_endpoint.disabled")
    assert notice.data["object"]["id"] == bad.pk and notice.data["object"]["status"] == "disabled"
    # the notice reaches the merchant's other endpoint; the disabled one gets nothing new
    [notice_delivery] = event_relay(event_id=notice.id)
    assert webhook_deliver(delivery_id=notice_delivery) == "succeeded"
    assert json.loads(healthy.requests[0].body)["type"] == "webhook_endpoint.disabled"
    fake_clock.advance(days=1)
    assert webhook_deliver(delivery_id=delivery_id) == "dead"  # open deliveries are dead-lettered
    assert event_relay(event_id=record(M).id) == []


def test_redirects_are_not_followed(enqueued, receivers):
    rx = receivers(statuses=[302])
    _, delivery = _delivery_for(rx, enqueued)
    assert webhook_deliver(delivery_id=delivery.pk) == "failed"
    [attempt] = delivery.attempts.all()
    assert attempt.status_code == 302 and "redirects are not followed" in attempt.error
    assert len(rx.requests) == 1


def test_timeouts_fail_the_attempt_and_the_response_body_is_truncated(settings, enqueued, receivers):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    slow = receivers(delay=1.0)
    _, delivery = _delivery_for(slow, enqueued)
    assert webhook_deliver(delivery_id=delivery.pk) == "failed"
    attempt = delivery.attempts.get()
    assert attempt.status_code is None and attempt.error.startswith("timeout")

    chatty = receivers(response_body=b"x" * 10_000)
    _, delivery = _delivery_for(chatty, enqueued, merchant_id="mer_chatty")
    assert webhook_deliver(delivery_id=delivery.pk) == "succeeded"
    assert len(delivery.attempts.get().response_body) == 2048


def test_url_is_checked_again_at_send_time(settings, enqueued, receivers):
    rx = receivers()
    _, delivery = _delivery_for(rx, enqueued)  # created while private URLs were allowed
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    assert webhook_deliver(delivery_id=delivery.pk) == "failed"
    assert delivery.attempts.get().error.startswith("url_forbidden") and rx.requests == []


def test_sender_connects_to_the_resolved_address_with_the_original_host(settings, monkeypatch, enqueued, receivers):
    rx = receivers()
    lookups = []

    def resolve(host, port):
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")] if host == "hooks.merchant.test" else []

    monkeypatch.setattr(ssrf, "resolve_host", resolve)
    created = webhook_endpoint_create(
        merchant_id=M, url=f"http://hooks.merchant.test:{rx.port}/payera", enabled_events=["*"]
    )
    [delivery_id] = event_relay(event_id=record(M).id)
    assert webhook_deliver(delivery_id=delivery_id) == "succeeded"
    got = rx.requests[0]
    assert got.headers["Host"] == f"hooks.merchant.test:{rx.port}" and got.path == "/payera"
    assert lookups == ["hooks.merchant.test", "hooks.merchant.test"]  # at creation and at send time
    assert created.endpoint.url.startswith("http://hooks.merchant.test")


def test_an_answer_body_with_a_nul_byte_is_recorded_and_the_delivery_succeeds_once(fake_clock, enqueued, receivers):
    """The attempt log keeps the start of the endpoint's answer; PostgreSQL text cannot hold a NUL
    character, so an endpoint answering 2xx with one in its body made the record step raise after
    the merchant had the event: the attempt's lease ran out, the sweep sent it again, and again —
    the same event every lease period, for ever (the retry horizon is only checked when an attempt
    is recorded). Now the NUL is stored as U+FFFD and the delivery succeeds, sent once."""
    rx = receivers(response_body=b'{"ok": true}\x00trailing')
    _, delivery = _delivery_for(rx, enqueued)
    assert webhook_deliver(delivery_id=delivery.pk) == "succeeded"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.lease_until is None
    attempt = delivery.attempts.get()
    assert attempt.response_body == '{"ok": true}\ufffdtrailing'
    fake_clock.advance(minutes=5)  # well past the lease
    webhook_retry_due()
    assert webhook_deliver(delivery_id=delivery.pk) == "final"
    assert len(rx.requests) == 1
