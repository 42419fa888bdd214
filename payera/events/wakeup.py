"""The outbox relay's wake-up: one Redis LPUSH of the event ids after commit instead of a Celery
publish per transaction (docs/decisions/0006-outbox-and-webhooks.md, "The relay wake-up").

Why: a Celery publish (`apply_async`) cost ~8 % of a payment request's CPU — the task message
built and routed, the queue declared, and kombu's Redis transport building a new `redis.Redis`
client for every publish (`Channel.conn_or_acquire()` without a client; a reused producer does
not help, the client is made below it). A wake-up is one command on a client kept per process.

How: the web process LPUSHes the ids on a list named after Celery's default queue
(`payera:events:relay-wakeup:<queue>`, so test sessions with queues of their own never mix); a
thread in every Celery worker (`RelayWakeupListener`, started on `worker_ready`) pops them —
as many as are waiting, up to `BATCH` — and publishes one `event_relay_batch_task` for the lot,
which relays each event as before (row lock, `relayed_at`, unique delivery per endpoint).

Nothing here is the source of truth: the event row is. A wake-up that is lost — Redis down at
commit, the list trimmed at `MAX_PENDING` while no worker listens, a worker killed between the
pop and its publish — leaves `relayed_at` NULL and the relay sweep fans the event out
(`event_relay_pending`, every 15 s); a wake-up that arrives twice, or after the sweep, finds the
event relayed and does nothing.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

logger = logging.getLogger("payera.events")

KEY_PREFIX = "payera:events:relay-wakeup:"
# Ids waiting with no worker to pop them are trimmed past this many (the sweep relays those).
MAX_PENDING = 10_000
# At most this many events in one relay message from the listener.
BATCH = 200
RELAY_TASKS = frozenset({"payera.events.tasks.event_relay_task", "payera.events.tasks.event_relay_batch_task"})

_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def broker_url(app) -> str:
    url = app.conf.broker_write_url or app.conf.broker_url
    return url if isinstance(url, str) else ""


def enabled(app) -> bool:
    """Wake-ups need a Redis broker (the worker listens there) and a real worker (not eager)."""
    return bool(_redis_url(app))


def _redis_url(app) -> str:
    if not settings.EVENTS_RELAY_WAKEUP or app.conf.task_always_eager:
        return ""
    url = broker_url(app)
    return url if url.startswith(("redis://", "rediss://", "unix://")) else ""


def wakeup_key(app) -> str:
    return KEY_PREFIX + app.conf.task_default_queue


def _client(url: str):
    client = _clients.get(url)
    if client is None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        with _clients_lock:
            client = _clients.get(url)
            if client is None:
                # Short timeouts and one retry (a pooled connection Redis closed since): an on-commit
                # hook must not hang a request while Redis is down. The pool is thread-safe and
                # re-made after a fork (redis-py checks the pid).
                client = redis.Redis.from_url(url, socket_connect_timeout=0.25, socket_timeout=0.5,
                                              retry=Retry(NoBackoff(), 1), health_check_interval=0)
                _clients[url] = client
    return client


def push(app, event_ids) -> bool | None:
    """Wake the relay for these committed events: True when done, None when wake-ups are not in
    use (no Redis broker, eager tasks, turned off: publish the relay task instead). Never raises:
    False when Redis could not be reached (the sweep relays them later)."""
    url = _redis_url(app)
    if not url:
        return None
    try:
        client = _client(url)
        key = wakeup_key(app)
        if client.lpush(key, *event_ids) > MAX_PENDING:
            client.ltrim(key, 0, MAX_PENDING - 1)  # no worker listening: keep the newest, sweep the rest
    except Exception:
        logger.warning("could not wake the relay for %r; the sweep will pick them up", tuple(event_ids),
                       exc_info=True)
        return False
    return True


class RelayWakeupListener(threading.Thread):
    """In a Celery worker: pop the wake-ups and publish one relay message per batch."""

    def __init__(self, app, *, block_seconds: float = 1.0):
        super().__init__(name="payera-relay-wakeup", daemon=True)
        self.app = app
        self.block_seconds = block_seconds
        self.stopping = threading.Event()

    def _listen_client(self):
        import redis

        return redis.Redis.from_url(broker_url(self.app), socket_connect_timeout=2,
                                    socket_timeout=self.block_seconds + 5, health_check_interval=0)

    def take(self, client) -> list[str]:
        """Block up to `block_seconds` for one wake-up, then take whatever else is waiting."""
        key = wakeup_key(self.app)
        got = client.brpop([key], timeout=self.block_seconds)
        if got is None:
            return []
        ids = [got[1]] + (client.rpop(key, BATCH - 1) or [])
        return list(dict.fromkeys(i.decode() if isinstance(i, bytes) else i for i in ids))

    def run(self) -> None:
        from payera.events import dispatch, tasks

        client, pause = None, 0.1
        while not self.stopping.is_set():
            try:
                client = client or self._listen_client()
                ids = self.take(client)
                pause = 0.1
            except Exception as exc:  # Redis gone: retry with a growing pause; the sweep covers meanwhile
                logger.warning("relay wake-up listener: %s; retrying in %.1f s", type(exc).__name__, pause)
                client = None
                self.stopping.wait(pause)
                pause = min(pause * 2, 5.0)
                continue
            if ids:  # published to the broker; if that fails, the ids are left to the sweep (logged)
                dispatch.publish(tasks.event_relay_batch_task, *ids)

    def stop(self, timeout: float | None = None) -> None:
        self.stopping.set()
        if timeout:
            self.join(timeout)


_listener: RelayWakeupListener | None = None


def start_listener(app) -> RelayWakeupListener | None:
    """Start this worker's listener once (idempotent: `worker_ready` may fire again)."""
    global _listener
    if not enabled(app):
        return None
    if _listener is None or not _listener.is_alive():
        _listener = RelayWakeupListener(app)
        _listener.start()
        logger.info("relay wake-up listener on %s", wakeup_key(app))
    return _listener


def stop_listener() -> None:
    global _listener
    if _listener is not None:
        _listener.stop(timeout=3)
        _listener = None
