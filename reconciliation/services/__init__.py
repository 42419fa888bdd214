"""Writes of settlement, payouts and reconciliation. Other apps import from here."""

from reconciliation.services.approvals import (
    discrepancy_approval_approve,
    discrepancy_approval_reject,
    discrepancy_request,
)
from reconciliation.services.bank_file import BankFile, HeldPayout, payout_bank_file_export
from reconciliation.services.discrepancies import (
    discrepancy_investigate,
    discrepancy_resolve,
    discrepancy_settle_as_reported,
    discrepancy_write_off,
)
from reconciliation.services.payouts import (
    payout_bank_account_reveal,
    payout_create,
    payout_mark_failed,
    payout_mark_in_transit,
    payout_mark_paid,
    payout_mark_returned,
    payout_run,
    payout_settings_update,
    payouts_held,
    payouts_send,
)
from reconciliation.services.reconcile import ReconcileResult, reconcile_import, reconcile_pull
from reconciliation.services.reheal import RehealResult, discrepancy_recheck, reconcile_reheal
from reconciliation.services.settlement import settlement_cutoff, settlement_run, settlement_run_one
from reconciliation.services.suspense import suspense_reallocate

__all__ = [
    "BankFile",
    "HeldPayout",
    "ReconcileResult",
    "RehealResult",
    "discrepancy_approval_approve",
    "discrepancy_approval_reject",
    "discrepancy_investigate",
    "discrepancy_recheck",
    "discrepancy_request",
    "discrepancy_resolve",
    "discrepancy_settle_as_reported",
    "discrepancy_write_off",
    "reconcile_import",
    "reconcile_pull",
    "reconcile_reheal",
    "payout_bank_account_reveal",
    "payout_bank_file_export",
    "payout_create",
    "payout_mark_failed",
    "payout_mark_in_transit",
    "payout_mark_paid",
    "payout_mark_returned",
    "payout_run",
    "payout_settings_update",
    "payouts_held",
    "payouts_send",
    "settlement_cutoff",
    "settlement_run",
    "settlement_run_one",
    "suspense_reallocate",
]
