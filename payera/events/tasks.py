"""Thin Celery entry points: ids in, one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down

from payera.events import services


@shared_task(bind=True, acks_late=True, ignore_result=True)
def event_relay_task(self, event_id: str) -> int:
    return len(services.event_relay(event_id=event_id))


@shared_task(bind=True, acks_late=True, ignore_result=True)
def event_relay_batch_task(self, *event_ids: str) -> int:
    """The events one transaction recorded together (e.g. payment.captured and payment.succeeded):
    one message to publish instead of one each. Relaying is idempotent, as for event_relay_task."""
    return sum(len(services.event_relay(event_id=event_id)) for event_id in event_ids)


@shared_task(bind=True, acks_late=True, ignore_result=True)
def event_relay_sweep_task(self) -> int:
    return services.event_relay_pending()


@shared_task(bind=True, acks_late=True, ignore_result=True)
def webhook_deliver_task(self, delivery_id: str) -> str:
    return services.webhook_deliver(delivery_id=delivery_id)


@shared_task(bind=True, acks_late=True, ignore_result=True)
def webhook_retry_sweep_task(self) -> int:
    return services.webhook_retry_due()


@shared_task(bind=True, acks_late=True, ignore_result=True)
def event_prune_task(self) -> int:
    return services.event_prune()


@worker_ready.connect
def _relay_wakeup_listener_start(sender=None, **kwargs) -> None:
    """Each worker listens for the relay wake-ups of committed events (payera/events/wakeup.py)."""
    from payera.events import wakeup

    wakeup.start_listener(sender.app if sender is not None else event_relay_batch_task.app)


@worker_shutting_down.connect
def _relay_wakeup_listener_stop(**kwargs) -> None:
    from payera.events import wakeup

    wakeup.stop_listener()
