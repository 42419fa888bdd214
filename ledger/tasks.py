"""Thin Celery entry points."""

from celery import shared_task

from ledger.services import pending_expire_due


@shared_task(bind=True, acks_late=True, max_retries=3, default_retry_delay=30)
def pending_expire_task(self) -> int:
    """Void pending journals past their expiry (scheduled by Celery beat). Safe to run twice."""
    return pending_expire_due()
