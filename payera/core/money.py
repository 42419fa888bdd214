"""Currencies and amounts: ISO 4217 codes and exponents (the `iso4217` package, from the
official ISO table), integers in minor units everywhere.

Decimal appears only at the edges, to read or write a PSP's "12.34"-style amounts; it is never
stored and never used for arithmetic on balances.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache

import iso4217

from payera.core.errors import InvalidRequestError

MAX_AMOUNT = 99_999_999_999  # minor units; well inside BIGINT, above any single card payment


class UnknownCurrencyError(InvalidRequestError):
    code = "currency_invalid"


@lru_cache(maxsize=512)
def _exponent(code: str) -> int | None:
    try:
        currency = iso4217.Currency(code)
    except ValueError:
        return None
    return currency.exponent  # None for funds/metals (XAU, XDR, ...): not payable


def currency_normalize(value: object, *, param: str = "currency") -> str:
    """`"eur"` → `"EUR"`; anything that is not a payable ISO 4217 currency → 400."""
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
        raise UnknownCurrencyError(f"Invalid currency: {value!r}. Use an ISO 4217 code.", param=param)
    code = value.upper()
    if _exponent(code) is None:
        raise UnknownCurrencyError(f"Invalid currency: {value!r}. Use an ISO 4217 code.", param=param)
    return code


def currency_exponent(code: str) -> int:
    exponent = _exponent(code.upper())
    if exponent is None:
        raise UnknownCurrencyError(f"Invalid currency: {code!r}.", param="currency")
    return exponent


def minor_from_decimal_string(value: str, currency: str) -> int:
    """Parse a PSP's major-unit amount ("12.34", "-5", "1000") into exact minor units.

    Refuses more decimals than the currency has (never rounds money silently).
    """
    try:
        amount = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        raise ValueError(f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    scaled = amount.scaleb(currency_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value!r} has more decimals than {currency} allows")
    return int(scaled)


def minor_to_decimal_string(amount: int, currency: str) -> str:
    exponent = currency_exponent(currency)
    if exponent == 0:
        return str(amount)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d}"
