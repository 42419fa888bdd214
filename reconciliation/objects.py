"""The payout object, as the API answers it and as events carry it (`data.object`)."""

from __future__ import annotations

from payera.core.db import created_timestamp


def _ts(value) -> int | None:
    return created_timestamp(value) if value is not None else None


def payout_object(payout) -> dict:
    return {
        "id": payout.id,
        "object": "payout",
        "amount": payout.amount,
        "currency": payout.currency,
        "status": payout.status,
        "destination": {"type": "bank_account", "masked": payout.bank_account_masked or None},
        "failure_reason": payout.failure_reason or None,
        "payout_date": payout.payout_date.isoformat(),
        "in_transit_at": _ts(payout.in_transit_at),
        "paid_at": _ts(payout.paid_at),
        "failed_at": _ts(payout.failed_at),
        "created": created_timestamp(payout.created_at),
    }
