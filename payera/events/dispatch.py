"""Publishing to the task queue. Never raises: the database is the source of truth and the
sweeps (relay, retry) pick up whatever could not be published, e.g. with the broker down."""

from __future__ import annotations

import logging

from payera.events import wakeup

logger = logging.getLogger("payera.events")

# Short publish retries: an on_commit callback must not hang a request while the broker is down.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2}


def enqueue(task, *args: str, countdown: float | None = None) -> bool:
    """Run `task(*args)` in a worker. The outbox relay of committed events is a Redis wake-up the
    workers listen to (payera/events/wakeup.py) when the broker is Redis; anything else, or a
    countdown, is a Celery message."""
    if countdown is None and task.name in wakeup.RELAY_TASKS:
        woken = wakeup.push(task.app, args)
        if woken is not None:
            return woken
    return publish(task, *args, countdown=countdown)


def publish(task, *args: str, countdown: float | None = None) -> bool:
    try:
        task.apply_async(args=args, countdown=countdown, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except Exception:  # broker down or misconfigured: the sweep relays it later
        logger.warning("could not publish %s%r; the sweep will pick it up", task.name, args, exc_info=True)
        return False
    return True
