"""Thin Celery entry points: ids in, one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task

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
