"""Beta's codes -> normalized ones. Data only (seeded into the admin-editable table).
Beta answers refusal reason codes (`refusalReasonCode`); SEPA debits use ISO 20022 reason codes."""

from __future__ import annotations

from psp_adapters.port import DeclineClass as C
from psp_adapters.port import DeclineCode as D
from psp_adapters.port import DisputeReason as R

DECLINE_CODES: dict[str, tuple[D, C]] = {
    "2": (D.GENERIC_DECLINE, C.HARD),
    "12": (D.INSUFFICIENT_FUNDS, C.HARD),
    "6": (D.EXPIRED_CARD, C.HARD),
    "8": (D.INCORRECT_NUMBER, C.HARD),
    "24": (D.INCORRECT_CVC, C.HARD),
    "16": (D.LOST_CARD, C.HARD),
    "17": (D.STOLEN_CARD, C.HARD),
    "22": (D.FRAUDULENT, C.HARD),
    "14": (D.DO_NOT_HONOR, C.SOFT),
    "4": (D.PROCESSING_ERROR, C.TECHNICAL),
    "20": (D.TRY_AGAIN_LATER, C.TECHNICAL),
    "11": (D.AUTHENTICATION_FAILED, C.HARD),
    "38": (D.AUTHENTICATION_REQUIRED, C.SOFT),
    "R01": (D.OPERATION_REJECTED, C.HARD),
    # SEPA (ISO 20022 reason codes)
    "AM04": (D.INSUFFICIENT_FUNDS, C.HARD),
    "AC04": (D.INVALID_ACCOUNT, C.HARD),
    "AC01": (D.INVALID_ACCOUNT, C.HARD),
    "MS03": (D.GENERIC_DECLINE, C.HARD),
}

DISPUTE_REASONS: dict[str, R] = {
    "10.4": R.FRAUDULENT,
    "13.1": R.PRODUCT_NOT_RECEIVED,
    "12.6.1": R.DUPLICATE,
    # SEPA returns (R-transactions after settlement, ISO 20022 reason codes): every one takes the
    # debit back, whatever the reason; MD01, AC04, AC06 and MD07 also end the mandate (payments'
    # `SepaDebitMethod.mandate_ending_codes`)
    "MD06": R.DEBIT_RETURNED,  # refund the debtor claims of an authorised debit (8 weeks)
    "AM04": R.DEBIT_RETURNED,  # insufficient funds
    "MD01": R.DEBIT_RETURNED,  # no valid mandate / unauthorised transaction
    "AC04": R.DEBIT_RETURNED,  # account closed
    "AC06": R.DEBIT_RETURNED,  # account blocked
    "MD07": R.DEBIT_RETURNED,  # debtor deceased
    "AC01": R.DEBIT_RETURNED,  # account identifier incorrect
    "AG01": R.DEBIT_RETURNED,  # transaction forbidden on this type of account
    "MS02": R.DEBIT_RETURNED,  # refused by the debtor
    "MS03": R.DEBIT_RETURNED,  # reason not specified
    "SL01": R.DEBIT_RETURNED,  # specific service offered by the debtor's bank
}
