"""The sandbox's own currency handling. It stands for a system outside Payera, so it does not
import Payera (`payera.core.money`); it reads the same official ISO 4217 table through the
`iso4217` package, so both sides agree on every exponent."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import iso4217


class UnknownCurrencyError(ValueError):
    pass


def currency_normalize(code: object) -> str:
    if not isinstance(code, str) or len(code) != 3 or not code.isalpha():
        raise UnknownCurrencyError(repr(code))
    up = code.upper()
    try:
        if iso4217.Currency(up).exponent is None:  # funds and metals: not payable
            raise UnknownCurrencyError(code)
    except ValueError:
        raise UnknownCurrencyError(code) from None
    return up


def currency_exponent(code: str) -> int:
    exp = iso4217.Currency(currency_normalize(code)).exponent
    assert exp is not None
    return int(exp)


def minor_to_decimal_string(minor: int, currency: str) -> str:
    exp = currency_exponent(currency)
    if exp == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    major, rest = divmod(abs(minor), 10**exp)
    return f"{sign}{major}.{rest:0{exp}d}"


def minor_from_decimal_string(value: str, currency: str) -> int:
    exp = currency_exponent(currency)
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
