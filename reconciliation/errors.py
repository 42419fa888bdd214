"""Typed errors of settlement and payouts."""

from __future__ import annotations

from collections.abc import Iterable

from payera.core.errors import InvalidRequestError, NotFoundError, PermissionDeniedError


class PayoutNotFoundError(NotFoundError):
    default_message = "No such payout."


class PayoutStateError(InvalidRequestError):
    code = "payout_state_invalid"
    http_status = 409
    default_message = "The payout can not make this transition from its current status."


class PayoutHeldError(PayoutStateError):
    """Payouts of a suspended merchant stay out of the bank file until it is reinstated."""

    code = "payout_held"
    default_message = "The payouts are held: their merchant is suspended."


class BankAccountInvalidError(InvalidRequestError):
    code = "bank_account_invalid"
    default_message = "The bank account is invalid."


class PayoutBankFilePermissionError(PermissionDeniedError):
    code = "payout_bank_file_permission_denied"
    default_message = "You may not export the bank file of these payouts."


class SettlementFileInvalidError(InvalidRequestError):
    code = "settlement_file_invalid"
    default_message = "The settlement report can not be read; nothing was imported."


class SettlementRunBusyError(InvalidRequestError):
    code = "settlement_run_busy"
    http_status = 409
    default_message = "This settlement report is being imported right now."

    def __init__(self, message: str | None = None, *, runs: Iterable[str] = (), **kwargs):
        super().__init__(message, **kwargs)
        self.runs = tuple(runs)  # the runs it waits for (empty: not known); the pull's wait looks at them


class DiscrepancyStateError(InvalidRequestError):
    code = "discrepancy_state_invalid"
    http_status = 409
    default_message = "The discrepancy can not make this transition from its current status."


class DiscrepancyPermissionError(PermissionDeniedError):
    code = "discrepancy_permission_denied"
    default_message = "You do not have the permission for this discrepancy action."


class DiscrepancyMoneyError(InvalidRequestError):
    """The money of a resolution does not fit the discrepancy (its kind, currency or amount)."""

    code = "discrepancy_money_invalid"
    default_message = "This resolution's money does not fit the discrepancy."


class DiscrepancyNeedsApprovalError(InvalidRequestError):
    """A money resolution above its currency's approval threshold (with what the item's other
    resolutions moved alone), or past its user's daily limit of what they moved alone
    (docs/reconciliation.md "Four eyes"): it needs a second user (`discrepancy_request` asks for one)."""

    code = "discrepancy_needs_approval"
    http_status = 409
    default_message = "This resolution moves more than one user may alone: it needs a second user's approval."

    def __init__(self, message: str | None = None, *, amount: int = 0, currency: str = "", **kwargs):
        if message is None and amount:
            message = (f"This resolution moves {amount} {currency} (minor units), above the approval threshold: it "
                       "needs a second user's approval.")  # fmt: skip
        super().__init__(message, **kwargs)
        self.amount, self.currency = amount, currency


class DiscrepancyApprovalPendingError(InvalidRequestError):
    code = "discrepancy_approval_pending"
    http_status = 409
    default_message = "A resolution of this discrepancy is already waiting for approval: approve or reject it first."


class DiscrepancyApprovalStateError(InvalidRequestError):
    code = "discrepancy_approval_state_invalid"
    http_status = 409
    default_message = "This approval has been decided already."


class DiscrepancyFourEyesError(PermissionDeniedError):
    code = "four_eyes_required"
    default_message = "The user who asked for a resolution may not approve it: a second user must."
