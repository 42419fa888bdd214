"""Typed errors of settlement and payouts."""

from __future__ import annotations

from payera.core.errors import InvalidRequestError, NotFoundError


class PayoutNotFoundError(NotFoundError):
    default_message = "No such payout."


class PayoutStateError(InvalidRequestError):
    code = "payout_state_invalid"
    http_status = 409
    default_message = "The payout can not make this transition from its current status."


class BankAccountInvalidError(InvalidRequestError):
    code = "bank_account_invalid"
    default_message = "The bank account is invalid."
