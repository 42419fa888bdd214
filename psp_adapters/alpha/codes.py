"""Alpha's codes -> normalized ones. Data only (seeded into the admin-editable table).
Alpha answers ISO 8583-style response codes (`response_code`)."""

from __future__ import annotations

from psp_adapters.port import DeclineClass as C
from psp_adapters.port import DeclineCode as D
from psp_adapters.port import DisputeReason as R

DECLINE_CODES: dict[str, tuple[D, C]] = {
    "05": (D.GENERIC_DECLINE, C.HARD),
    "51": (D.INSUFFICIENT_FUNDS, C.HARD),
    "54": (D.EXPIRED_CARD, C.HARD),
    "14": (D.INCORRECT_NUMBER, C.HARD),
    "82": (D.INCORRECT_CVC, C.HARD),
    "41": (D.LOST_CARD, C.HARD),
    "43": (D.STOLEN_CARD, C.HARD),
    "59": (D.FRAUDULENT, C.HARD),
    "57": (D.CARD_NOT_SUPPORTED, C.HARD),
    "61": (D.DO_NOT_HONOR, C.SOFT),
    "91": (D.TRY_AGAIN_LATER, C.TECHNICAL),
    "96": (D.PROCESSING_ERROR, C.TECHNICAL),
    "R1": (D.AUTHENTICATION_FAILED, C.HARD),
    "1A": (D.AUTHENTICATION_REQUIRED, C.SOFT),
    "R5": (D.OPERATION_REJECTED, C.HARD),
}

DISPUTE_REASONS: dict[str, R] = {
    "4837": R.FRAUDULENT,
    "4853": R.GENERAL,
    "4855": R.PRODUCT_NOT_RECEIVED,
    "4834": R.DUPLICATE,
    "RTRN": R.DEBIT_RETURNED,
}
