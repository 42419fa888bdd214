"""Delivering events to merchant endpoints: claim, send (outside any transaction), record.

One attempt is three steps, as a PSP call is (STYLE):
1. claim (short transaction): lock the endpoint then the delivery; check it is due and that the
   endpoint has a free slot (per-endpoint concurrency limit, counted from in-flight leases in
   the database, so it holds across workers and machines); take a lease.
2. send: resolve and check the URL again (SSRF), connect to that address, POST the signed body
   with short timeouts, a total deadline (connect + answer timeouts, covering the resolution
   too: it runs in a bounded thread of its own, waited for until the deadline) and no redirects.
3. record (short transaction): log the attempt; succeed, schedule the next try (exponential
   backoff with jitter) or dead-letter after the horizon; track the endpoint's failure streak and
   disable it (with a `webhook_endpoint.disabled` event) when it has failed for days.

A task run twice, or a crashed worker's redelivered message, finds the delivery leased or not due
and does nothing; a lease that expires (worker killed mid-send) makes the delivery due again.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import httpx
from django.conf import settings
from django.db import transaction

from payera.core.db import outside_transaction
from payera.core.errors import InvalidRequestError
from payera.core.masking import mask_text
from payera.core.nul import storable
from payera.events import clock, dispatch, signing, ssrf
from payera.events.backoff import RetryPolicy, next_attempt
from payera.events.errors import DeliveryNotReplayableError, WebhookDeliveryNotFoundError
from payera.events.models import (
    DeliveryAttempt,
    DeliveryStatus,
    EndpointStatus,
    Event,
    WebhookDelivery,
    WebhookEndpoint,
)
from payera.events.services.endpoints import (
    decrypt_secret,
    endpoint_signing_secret_ciphertexts,
    webhook_endpoint_lock,
)
from payera.events.services.events import event_record
from payera.events.types import ENDPOINT_DISABLED

logger = logging.getLogger("payera.events")

MAX_DEFER_SECONDS = 60.0
USER_AGENT = "Payera-Webhooks/1.0 (+https://github.com/payera)"


def _tasks():
    from payera.events import tasks

    return tasks


def retry_policy() -> RetryPolicy:
    return RetryPolicy(
        base_seconds=settings.WEBHOOK_RETRY_BASE_SECONDS,
        max_seconds=settings.WEBHOOK_RETRY_MAX_SECONDS,
        horizon_seconds=settings.WEBHOOK_RETRY_HORIZON_SECONDS,
        jitter=settings.WEBHOOK_RETRY_JITTER,
    )


def lease_seconds() -> float:
    return settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS + settings.WEBHOOK_TIMEOUT_SECONDS + 15


def _schedule(delivery_id: str, at: datetime, now: datetime) -> None:
    """Wake the delivery at `at` when that is soon; later ones are found by the retry sweep."""
    delay = max((at - now).total_seconds(), 0.0)
    if delay <= settings.WEBHOOK_COUNTDOWN_MAX_SECONDS:
        task = _tasks().webhook_deliver_task
        transaction.on_commit(
            partial(dispatch.enqueue, task, delivery_id, countdown=(delay + 0.05) if delay else None), robust=True
        )


@dataclass(frozen=True, slots=True)
class Claim:
    delivery_id: str
    attempt_number: int
    url: str
    secret_ciphertexts: tuple[str, ...]
    body: bytes
    event_id: str
    merchant_id: str


@dataclass(frozen=True, slots=True)
class SendResult:
    started_at: datetime
    succeeded: bool
    status_code: int | None = None
    latency_ms: int | None = None
    error: str = ""
    response_body: str = ""
    endpoint_fault: bool = True  # False when the failure is ours (e.g. secrets backend down)


def _claim(delivery_id: str) -> Claim | str:
    with transaction.atomic(durable=True):
        row = WebhookDelivery.objects.filter(pk=delivery_id).values("endpoint_id", "status").first()
        if row is None:
            return "missing"
        if row["status"] not in DeliveryStatus.open():
            return "final"
        endpoint = WebhookEndpoint.objects.select_for_update(of=("self",)).filter(pk=row["endpoint_id"]).first()
        delivery = WebhookDelivery.objects.select_for_update(of=("self",)).filter(pk=delivery_id).first()
        if endpoint is None or delivery is None:
            return "missing"
        now = clock.now()
        if delivery.status not in DeliveryStatus.open():
            return "final"
        if delivery.next_attempt_at is None or delivery.next_attempt_at > now:
            return "not_due"
        if endpoint.status != EndpointStatus.ENABLED:
            delivery.status = DeliveryStatus.DEAD
            delivery.last_error = "endpoint disabled"
            delivery.next_attempt_at = None
            delivery.lease_until = None
            delivery.completed_at = now
            delivery.save()
            return "dead"
        in_flight = (
            WebhookDelivery.objects.filter(endpoint_id=endpoint.pk, lease_until__gt=now).exclude(pk=delivery.pk).count()
        )
        limit = settings.WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT
        if in_flight >= limit:
            # No slot: step aside without holding a worker and try again later: the longer the
            # endpoint's queue, the later, so a big backlog does not poll the endpoint row.
            waiting = WebhookDelivery.objects.filter(
                endpoint_id=endpoint.pk, status__in=DeliveryStatus.open(), next_attempt_at__lte=now
            ).count()
            wait = min(
                settings.WEBHOOK_CONCURRENCY_RETRY_SECONDS * max(1.0, waiting / limit) * random.uniform(1.0, 1.5),
                MAX_DEFER_SECONDS,
            )
            delivery.next_attempt_at = now + timedelta(seconds=wait)
            delivery.save(update_fields=["next_attempt_at"])
            _schedule(delivery.pk, delivery.next_attempt_at, now)
            return "deferred"
        lease_until = now + timedelta(seconds=lease_seconds())
        delivery.attempt_count += 1
        delivery.lease_until = lease_until
        delivery.next_attempt_at = lease_until  # due again if this attempt never reports back
        delivery.last_attempt_at = now
        delivery.save(update_fields=["attempt_count", "lease_until", "next_attempt_at", "last_attempt_at"])
        event = Event.objects.get(pk=delivery.event_id)
        body = json.dumps(event.to_payload(), separators=(",", ":"), ensure_ascii=False).encode()
        return Claim(
            delivery_id=delivery.pk,
            attempt_number=delivery.attempt_count,
            url=endpoint.url,
            secret_ciphertexts=tuple(endpoint_signing_secret_ciphertexts(endpoint, at=now)),
            body=body,
            event_id=event.pk,
            merchant_id=endpoint.merchant_id,
        )


def _read_limited(response: httpx.Response, limit: int) -> str:
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    # PostgreSQL text cannot hold NUL: one in the answer would fail the record step after a send
    return storable(b"".join(chunks)[:limit].decode("utf-8", errors="replace"))


class _Deadline:
    """A total time limit on one send. httpx's timeouts apply to each socket read, so an endpoint
    dribbling its answer (a byte every few seconds) would hold the worker past its lease, while its
    concurrency slot counts as free. At the deadline the connection's socket is shut down, which
    ends the blocking read in the sending thread (an httpx error, then a failed attempt — or, if
    the 2xx status already arrived, a cut response body)."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._seconds = seconds
        self._ends: float | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def trace(self, name: str, info: dict) -> None:
        """httpx's `trace` extension: remember the socket once connected (and after TLS)."""
        if name in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            with self._lock:
                self._sock = stream.get_extra_info("socket") if stream is not None else None
                if self.fired:
                    self._shutdown()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            try:  # the TCP socket itself (under TLS too): the reading thread sees the connection end
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def remaining(self) -> float:
        """Seconds left before the deadline (the whole limit before it started)."""
        if self._ends is None:
            return self._seconds
        return max(self._ends - time.monotonic(), 0.0)

    def __enter__(self) -> _Deadline:
        self._ends = time.monotonic() + self._seconds
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()


def _send(claim: Claim) -> SendResult:
    started_at = clock.now()
    with outside_transaction():
        try:
            signing_secrets = [decrypt_secret(c) for c in claim.secret_ciphertexts]
        except Exception as exc:
            logger.error("webhook signing secret unavailable for %s", claim.delivery_id, exc_info=True)
            return SendResult(
                started_at, False, error=f"signing secret unavailable: {type(exc).__name__}"[:500], endpoint_fault=False
            )
        limit = settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS + settings.WEBHOOK_TIMEOUT_SECONDS
        deadline, late = _Deadline(limit), f"timeout: no complete answer within {limit:g} s"
        t0 = time.monotonic()
        # The deadline covers the whole send, name resolution included: a slow resolver must not
        # hold the delivery thread past its lease any more than a slow endpoint.
        with deadline:
            try:
                parsed, addresses = ssrf.check_url_within(
                    claim.url, deadline.remaining(), merchant_id=claim.merchant_id
                )
            except ssrf.MerchantLookupsHang:  # its other hosts' lookups hang: not this endpoint's fault
                latency = int((time.monotonic() - t0) * 1000)
                error = f"timeout: the merchant's other webhook hosts' lookups hang; not resolved within {limit:g} s"
                return SendResult(started_at, False, latency_ms=latency, error=error, endpoint_fault=False)
            except ssrf.ResolutionTimeout:
                latency = int((time.monotonic() - t0) * 1000)
                error = f"timeout: the host did not resolve within {limit:g} s"
                return SendResult(started_at, False, latency_ms=latency, error=error)
            except ssrf.ResolverBusy:  # other hosts' hung lookups hold every resolver thread: ours
                latency = int((time.monotonic() - t0) * 1000)
                error = f"timeout: no resolver thread came free within {limit:g} s (other hosts' lookups hang)"
                logger.warning("webhook delivery %s: %s", claim.delivery_id, error)
                return SendResult(started_at, False, latency_ms=latency, error=error, endpoint_fault=False)
            except InvalidRequestError as exc:
                return SendResult(started_at, False, error=f"{exc.code}: {exc.message}"[:500])
            return _post(claim, signing_secrets, parsed, addresses, deadline, late, started_at, t0)


def _post(
    claim: Claim,
    signing_secrets: list[str],
    parsed: ssrf.ParsedUrl,
    addresses: list[ssrf.IPAddress],
    deadline: _Deadline,
    late: str,
    started_at: datetime,
    t0: float,
) -> SendResult:
    """POST the signed body to the checked addresses, under `deadline`."""
    if deadline.fired:  # the resolution took (nearly) all the time
        return SendResult(started_at, False, latency_ms=int((time.monotonic() - t0) * 1000), error=late)
    timestamp = int(time.time())
    headers = {
        "Host": parsed.host_header,
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        signing.HEADER: signing.sign(signing_secrets, timestamp, claim.body),
        "Payera-Event-Id": claim.event_id,
        "Payera-Delivery-Id": claim.delivery_id,
        "Payera-Delivery-Attempt": str(claim.attempt_number),
    }
    extensions: dict = {"trace": deadline.trace}
    if parsed.scheme == "https" and ssrf.literal_address(parsed.host) is None:
        extensions["sni_hostname"] = parsed.host  # TLS name checks stay on the real host
    timeout = httpx.Timeout(settings.WEBHOOK_TIMEOUT_SECONDS, connect=settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS)
    error = ""
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for address in addresses[:2]:  # the checked addresses only: no second DNS lookup
            request = client.build_request(
                "POST", parsed.url_for(address), content=claim.body, headers=headers, extensions=extensions
            )
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError as exc:
                if deadline.fired:
                    break
                error = f"connect error: {exc}"[:500]
                continue
            except httpx.TimeoutException as exc:
                latency = int((time.monotonic() - t0) * 1000)
                return SendResult(started_at, False, latency_ms=latency, error=f"timeout: {type(exc).__name__}")
            except httpx.HTTPError as exc:
                latency = int((time.monotonic() - t0) * 1000)
                if deadline.fired:
                    return SendResult(started_at, False, latency_ms=latency, error=late)
                return SendResult(started_at, False, latency_ms=latency, error=f"http error: {exc}"[:500])
            try:
                try:
                    text = _read_limited(response, DeliveryAttempt.RESPONSE_BODY_LIMIT)
                except httpx.HTTPError:
                    text = ""
            finally:
                response.close()
            latency = int((time.monotonic() - t0) * 1000)
            ok = 200 <= response.status_code < 300
            err = "" if ok else f"HTTP {response.status_code}"
            if 300 <= response.status_code < 400:
                err += " (redirects are not followed)"
            return SendResult(started_at, ok, response.status_code, latency, err, text)
    latency = int((time.monotonic() - t0) * 1000)
    if deadline.fired:
        return SendResult(started_at, False, latency_ms=latency, error=late)
    return SendResult(started_at, False, latency_ms=latency, error=error or "no address to connect to")


def _record(claim: Claim, result: SendResult) -> str:
    with transaction.atomic(durable=True):
        row = WebhookDelivery.objects.filter(pk=claim.delivery_id).values("endpoint_id").first()
        if row is None:
            return "missing"
        endpoint = webhook_endpoint_lock(endpoint_id=row["endpoint_id"])
        delivery = WebhookDelivery.objects.select_for_update(of=("self",)).get(pk=claim.delivery_id)
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=claim.attempt_number,
            started_at=result.started_at,
            succeeded=result.succeeded,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error[:500],
            # the endpoint's answer is shown in the back office: never a card number or key in it
            response_body=mask_text(result.response_body)[: DeliveryAttempt.RESPONSE_BODY_LIMIT],
        )
        now = clock.now()
        if delivery.status not in DeliveryStatus.open():
            return "stale"
        if delivery.attempt_count != claim.attempt_number and not result.succeeded:
            return "stale"  # our lease ran out and another attempt owns the delivery now
        delivery.lease_until = None
        delivery.last_error = result.error[:500]
        if result.succeeded:
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.next_attempt_at = None
            delivery.completed_at = now
            outcome = "succeeded"
            if endpoint.consecutive_failures or endpoint.failing_since:
                endpoint.consecutive_failures = 0
                endpoint.failing_since = None
                endpoint.save(update_fields=["consecutive_failures", "failing_since"])
        else:
            failures = DeliveryAttempt.objects.filter(
                delivery=delivery, succeeded=False, started_at__gte=delivery.window_started_at
            ).count()
            at = next_attempt(
                policy=retry_policy(), failures=max(failures, 1), window_started_at=delivery.window_started_at, now=now
            )
            if at is None:
                delivery.status = DeliveryStatus.DEAD
                delivery.next_attempt_at = None
                delivery.completed_at = now
                outcome = "dead"
                logger.warning(
                    "webhook delivery %s dead-lettered after %d attempts", delivery.pk, delivery.attempt_count
                )
            else:
                delivery.status = DeliveryStatus.FAILED
                delivery.next_attempt_at = at
                outcome = "failed"
                _schedule(delivery.pk, at, now)
            if result.endpoint_fault:
                _note_endpoint_failure(endpoint, now)
        delivery.save()
        return outcome


def _note_endpoint_failure(endpoint: WebhookEndpoint, now: datetime) -> None:
    endpoint.consecutive_failures += 1
    endpoint.failing_since = endpoint.failing_since or now
    failing_for = (now - endpoint.failing_since).total_seconds()
    if (
        endpoint.status == EndpointStatus.ENABLED
        and failing_for >= settings.WEBHOOK_ENDPOINT_DISABLE_AFTER_SECONDS
        and endpoint.consecutive_failures >= settings.WEBHOOK_ENDPOINT_DISABLE_MIN_FAILURES
    ):
        endpoint.status = EndpointStatus.DISABLED
        endpoint.disabled_reason = f"failing since {endpoint.failing_since.isoformat()}"
        endpoint.updated_at = now
        logger.warning("webhook endpoint %s disabled: %s", endpoint.pk, endpoint.disabled_reason)
        endpoint.save()
        event_record(merchant_id=endpoint.merchant_id, type=ENDPOINT_DISABLED, data=endpoint.to_object())
    else:
        endpoint.save(update_fields=["consecutive_failures", "failing_since"])


def webhook_deliver(*, delivery_id: str) -> str:
    """One attempt at a delivery if it is due. Answers what happened: `succeeded`, `failed`
    (retry scheduled), `dead`, `deferred` (endpoint at its concurrency limit), or a no-op reason
    (`missing`, `final`, `not_due`, `stale`)."""
    claim = _claim(delivery_id)
    if isinstance(claim, str):
        return claim
    try:
        result = _send(claim)
    except Exception as exc:  # a bug of ours must not leave the lease to expire unrecorded
        logger.exception("webhook delivery %s: unexpected error while sending", delivery_id)
        result = SendResult(clock.now(), False, error=f"internal error: {type(exc).__name__}", endpoint_fault=False)
    return _record(claim, result)


def webhook_retry_due(*, limit: int = 1000) -> int:
    """The retry sweep: queue deliveries whose next attempt is due (a due one that is already
    queued runs once: the second task finds it leased or done)."""
    ids = list(
        WebhookDelivery.objects.filter(status__in=DeliveryStatus.open(), next_attempt_at__lte=clock.now())
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )
    task = _tasks().webhook_deliver_task
    for delivery_id in ids:
        dispatch.enqueue(task, delivery_id)
    return len(ids)


def _reopen(delivery: WebhookDelivery, now: datetime) -> None:
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = now
    delivery.window_started_at = now
    delivery.lease_until = None
    delivery.completed_at = None
    delivery.replay_count += 1
    delivery.save()
    _schedule(delivery.pk, now, now)


def delivery_replay(*, delivery_id: str, merchant_id: str | None = None) -> WebhookDelivery:
    """Send a dead (or still retrying) delivery again now, with a fresh retry horizon.
    `merchant_id` scopes the lookup for merchant-facing callers; the admin passes none."""
    qs = WebhookDelivery.objects.filter(pk=delivery_id)
    if merchant_id is not None:
        qs = qs.filter(merchant_id=merchant_id)
    row = qs.values("endpoint_id").first()
    if row is None:
        raise WebhookDeliveryNotFoundError(f"No such webhook delivery: '{delivery_id}'.", param="id")
    with transaction.atomic(durable=True):
        endpoint = webhook_endpoint_lock(endpoint_id=row["endpoint_id"])
        delivery = WebhookDelivery.objects.select_for_update(of=("self",)).get(pk=delivery_id)
        now = clock.now()
        replayable = delivery.status == DeliveryStatus.DEAD or (
            delivery.status == DeliveryStatus.FAILED and not (delivery.lease_until and delivery.lease_until > now)
        )
        if not replayable or endpoint.status != EndpointStatus.ENABLED:
            raise DeliveryNotReplayableError(
                f"Delivery {delivery_id} is {delivery.status} and its endpoint {endpoint.status}; "
                "only dead or failing deliveries of an enabled endpoint can be replayed.",
                param="id",
            )
        _reopen(delivery, now)
    return delivery


def endpoint_replay_dead_letters(*, endpoint_id: str, merchant_id: str | None = None) -> int:
    """Replay every dead delivery of an endpoint; answers how many were queued."""
    with transaction.atomic(durable=True):
        endpoint = webhook_endpoint_lock(endpoint_id=endpoint_id, merchant_id=merchant_id)
        if endpoint.status != EndpointStatus.ENABLED:
            raise DeliveryNotReplayableError("Enable the endpoint before replaying its dead letters.", param="id")
        now = clock.now()
        dead = list(
            WebhookDelivery.objects.select_for_update(of=("self",)).filter(
                endpoint=endpoint, status=DeliveryStatus.DEAD
            )
        )
        for delivery in dead:
            _reopen(delivery, now)
    return len(dead)
