"""Thin Celery entry points: ids in, one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task


@shared_task(bind=True, acks_late=True, max_retries=5, default_retry_delay=5)
def psp_webhook_process_task(self, webhook_id: str) -> str:
    from payments.services import psp_webhook_process

    try:
        return psp_webhook_process(webhook_id=int(webhook_id))
    except Exception as exc:  # the sweep also picks it up; retry sooner
        raise self.retry(exc=exc) from exc


@shared_task(acks_late=True)
def psp_webhook_sweep_task() -> int:
    from payments.services import psp_webhook_process_due

    return psp_webhook_process_due()


@shared_task(acks_late=True)
def recovery_run_task() -> dict:
    from payments.services import recovery_run

    return recovery_run()


@shared_task(acks_late=True)
def authorization_expiry_task() -> list:
    from payments.services import payment_expire_authorizations

    return payment_expire_authorizations()


@shared_task(acks_late=True)
def stuck_sweep_task() -> dict:
    from payments.services import stuck_sweep

    return stuck_sweep()


@shared_task(acks_late=True)
def subscriptions_run_task() -> dict:
    """Beat: charge the subscriptions due (periods and dunning retries); safe to overlap."""
    from payments.services import subscriptions_run

    return subscriptions_run()
