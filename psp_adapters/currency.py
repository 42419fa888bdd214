"""ISO 4217 minor-unit exponents and exact conversions between minor units and decimal strings.

pycountry knows which codes exist (ISO 4217 list one) but not their minor units, so the
exponents come from this table: the codes whose minor unit is not 2, copied from ISO 4217 list
one (SIX), and the codes that have no minor unit at all (metals, fund codes: not payable).
Every other code pycountry knows has 2. Why not babel/CLDR: CLDR's "digits" are display
conventions and differ from ISO for money on the wire (e.g. CLDR gives 0 for some currencies
whose ISO exponent is 2); PSPs settle in ISO minor units. See docs/decisions/0005-psp-adapters.md.

Pure standard library + pycountry: also imported by the sandbox servers.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache

import pycountry

NON_TWO_EXPONENTS: dict[str, int] = {
    # 0 decimals
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    # 3 decimals
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # 4 decimals
    "CLF": 4, "UYW": 4,
}  # fmt: skip

NO_MINOR_UNIT: frozenset[str] = frozenset(
    {"XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"}
)


class UnknownCurrencyError(ValueError):
    pass


@lru_cache(maxsize=1)
def _known_codes() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies) | frozenset(NON_TWO_EXPONENTS)


def normalize_currency(code: str) -> str:
    """Upper-cased ISO 4217 code of a payable currency, or UnknownCurrencyError."""
    if not isinstance(code, str):
        raise UnknownCurrencyError(repr(code))
    up = code.strip().upper()
    if len(up) != 3 or up not in _known_codes() or up in NO_MINOR_UNIT:
        raise UnknownCurrencyError(code)
    return up


def exponent(code: str) -> int:
    up = normalize_currency(code)
    return NON_TWO_EXPONENTS.get(up, 2)


def to_decimal_string(minor: int, currency: str) -> str:
    """1234, "EUR" -> "12.34"; -5, "EUR" -> "-0.05"; 1234, "JPY" -> "1234"."""
    exp = exponent(currency)
    if exp == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    major, rest = divmod(abs(minor), 10**exp)
    return f"{sign}{major}.{rest:0{exp}d}"


def from_decimal_string(value: str, currency: str) -> int:
    """ "12.34", "EUR" -> 1234. Refuses more decimals than the currency has (no rounding)."""
    exp = exponent(currency)
    try:
        amount = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        raise ValueError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    scaled = amount.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value!r} has more than {exp} decimals for {currency}")
    return int(scaled)
