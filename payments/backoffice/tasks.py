"""Thin Celery entry points of the payments back office: one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True)
def refund_approvals_resume_task() -> dict:
    from payments.backoffice.services import refund_approvals_resume

    return refund_approvals_resume()
