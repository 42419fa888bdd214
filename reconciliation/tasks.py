"""Thin Celery entry points (beat: daily settlement, then payouts). Safe to run twice."""

from __future__ import annotations

from celery import shared_task

from reconciliation import services


@shared_task(bind=True, acks_late=True, ignore_result=True)
def settlement_run_task(self) -> int:
    return sum(1 for o in services.settlement_run() if o.created and o.status == "settled")


@shared_task(bind=True, acks_late=True, ignore_result=True)
def payout_run_task(self) -> int:
    return sum(1 for o in services.payout_run() if o.created)


@shared_task(bind=True, acks_late=True, ignore_result=True)
def reconcile_pull_task(self, day: str | None = None) -> int:
    """Fetch yesterday's settlement report of every PSP, and the earlier days of the catch-up
    window no finished import covers (a night the PSP could not be reached), and reconcile them
    (safe twice: a file imported before changes nothing). `day`: that day only."""
    import datetime as dt

    return len(services.reconcile_pull(day=dt.date.fromisoformat(day) if day else None))


@shared_task(bind=True, acks_late=True, ignore_result=True)
def reconcile_reheal_task(self) -> int:
    """The late heal (beat, RECONCILIATION_REHEAL_INTERVAL_SECONDS): ask the PSPs again about the
    waiting "missing in Payera" report lines and settle those that now match (safe twice, or two
    at once: a line posts once). Returns how many lines it healed."""
    return services.reconcile_reheal().healed
