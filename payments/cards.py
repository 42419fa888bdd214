"""Card data rules without I/O: Luhn, brand, expiry, what may be shown.

The full number (PAN) and CVC pass through here only in memory; nothing here logs or stores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from payera.core.errors import InvalidRequestError
from payera.core.masking import luhn_valid


class CardInvalidError(InvalidRequestError):
    code = "card_invalid"


# Brand by IIN range (first digits) and allowed lengths; the first match wins, so narrower
# ranges come first. Sources: the schemes' published IIN ranges.
_BRANDS: tuple[tuple[str, tuple[tuple[int, int], ...], tuple[int, ...]], ...] = (
    ("amex", ((34, 34), (37, 37)), (15,)),
    ("diners", ((300, 305), (36, 36), (38, 39)), (14, 15, 16, 17, 18, 19)),
    ("jcb", ((3528, 3589),), (16, 17, 18, 19)),
    ("discover", ((6011, 6011), (644, 649), (65, 65), (622126, 622925)), (16, 17, 18, 19)),
    ("unionpay", ((62, 62), (81, 81)), (16, 17, 18, 19)),
    ("mastercard", ((51, 55), (2221, 2720)), (16,)),
    ("maestro", ((50, 50), (56, 58), (6, 6)), (12, 13, 14, 15, 16, 17, 18, 19)),
    ("visa", ((4, 4),), (13, 16, 19)),
)


def card_brand(pan: str) -> str:
    for brand, ranges, lengths in _BRANDS:
        if len(pan) not in lengths:
            continue
        for low, high in ranges:
            width = len(str(low))
            if low <= int(pan[:width]) <= high:
                return brand
    return "unknown"


@dataclass(frozen=True, slots=True)
class CardInput:
    """A validated card, as it lives in memory for the one PSP call. `repr` hides the secrets."""

    number: str
    exp_month: int
    exp_year: int
    cvc: str | None
    brand: str

    @property
    def bin(self) -> str:
        return self.number[:6]

    @property
    def last4(self) -> str:
        return self.number[-4:]

    def __repr__(self) -> str:
        return f"CardInput({self.brand} {self.bin}******{self.last4} exp {self.exp_month:02d}/{self.exp_year})"

    __str__ = __repr__


def card_validate(*, number: object, exp_month: object, exp_year: object, cvc: object, today: date) -> CardInput:
    """Shape and rule checks before any PSP call: 400 with the offending `param`."""
    if not isinstance(number, str):
        raise CardInvalidError("The card number must be a string of digits.", param="payment_method_data[card][number]")
    digits = re.sub(r"[ -]", "", number)
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise CardInvalidError(
            "The card number is not a valid card number.",
            param="payment_method_data[card][number]",
            code="invalid_number",
        )
    if not luhn_valid(digits):
        raise CardInvalidError(
            "The card number is incorrect.", param="payment_method_data[card][number]", code="incorrect_number"
        )
    if isinstance(exp_month, bool) or not isinstance(exp_month, int) or not 1 <= exp_month <= 12:
        raise CardInvalidError(
            "The expiry month is invalid.", param="payment_method_data[card][exp_month]", code="invalid_expiry_month"
        )
    if isinstance(exp_year, bool) or not isinstance(exp_year, int):
        raise CardInvalidError(
            "The expiry year is invalid.", param="payment_method_data[card][exp_year]", code="invalid_expiry_year"
        )
    if exp_year < 100:
        exp_year += 2000
    if not today.year <= exp_year <= today.year + 50:
        raise CardInvalidError(
            "The card has expired." if exp_year < today.year else "The expiry year is invalid.",
            param="payment_method_data[card][exp_year]",
            code="expired_card" if exp_year < today.year else "invalid_expiry_year",
        )
    if (exp_year, exp_month) < (today.year, today.month):
        raise CardInvalidError(
            "The card has expired.", param="payment_method_data[card][exp_month]", code="expired_card"
        )
    if cvc is not None:
        if not isinstance(cvc, str) or not cvc.isdigit() or not 3 <= len(cvc) <= 4:
            raise CardInvalidError(
                "The security code is invalid.", param="payment_method_data[card][cvc]", code="invalid_cvc"
            )
    return CardInput(number=digits, exp_month=exp_month, exp_year=exp_year, cvc=cvc, brand=card_brand(digits))
