from celery import shared_task

from payera.idempotency.services import idempotency_prune


@shared_task(bind=True, acks_late=True)
def idempotency_prune_task(self) -> int:
    return idempotency_prune()
