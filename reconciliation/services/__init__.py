"""Writes of settlement and payouts. Other apps import from here."""

from reconciliation.services.payouts import (
    payout_bank_account_reveal,
    payout_create,
    payout_mark_failed,
    payout_mark_in_transit,
    payout_mark_paid,
    payout_run,
    payout_settings_update,
    payouts_send,
)
from reconciliation.services.settlement import settlement_cutoff, settlement_run, settlement_run_one

__all__ = [
    "payout_bank_account_reveal",
    "payout_create",
    "payout_mark_failed",
    "payout_mark_in_transit",
    "payout_mark_paid",
    "payout_run",
    "payout_settings_update",
    "payouts_send",
    "settlement_cutoff",
    "settlement_run",
    "settlement_run_one",
]
