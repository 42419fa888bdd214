"""Currencies and amounts: ISO 4217 codes and exponents (the `iso4217` package, from the
official ISO table), integers in minor units everywhere.

Decimal appears only at the edges, to read or write a PSP's "12.34"-style amounts; it is never
stored and never used for arithmetic on balances.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import lru_cache

import iso4217

from payera.core.errors import InvalidRequestError

logger = logging.getLogger("payera.money")

# The largest amount of one payment or subscription, in minor units: above any single card payment,
# and small enough that the ledger's bigint balances (a connector's receivable is shared by every
# merchant) can not overflow (2**63 / MAX_AMOUNT: 92 million such payments unsettled). Up to 2**53
# was taken before: 1,024 payments of 2**53 - 1 made the next capture's posting fail "bigint out of
# range" after the PSP had captured it (tests/payments/test_amount_maximum.py).
MAX_AMOUNT = 99_999_999_999


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


# --- per-currency amounts (settings tables: ISO 4217 code -> minor units) ---------------------
# A fixed amount of money (a chargeback fee, a minimum payout) is worth something different in
# each currency, and a minor unit is too (¥1 is a minor unit; so is 0.001 KWD): one number of
# minor units for every currency is wrong in most of them. Such settings are tables naming each
# currency's amount in its own minor units, plus "*": the amount for any currency the table does
# not name, in hundredths of the major unit (like a fee schedule's fixed part), scaled to the
# currency's ISO 4217 exponent. That fallback only gets the digits right, not the value: it is
# logged as a warning each time it is used, so operations add the currency to the table.
PER_CURRENCY_FALLBACK = "*"


def per_currency_amount(table: Mapping[str, int], currency: str, *, setting: str, warn: bool = True) -> int:
    """The table's amount for `currency` in its minor units (see above). `warn=False`: a table whose
    "*" is meant for every currency it does not name (a threshold, not a price): no warning."""
    code = currency.upper()
    if code in table:
        return int(table[code])
    exponent = currency_exponent(code)
    derived = int(table[PER_CURRENCY_FALLBACK]) * 10**exponent // 100
    if not warn:
        return derived
    logger.warning("%s names no amount for %s: %s minor units derived from its %r entry; add %s to the table",
                   setting, code, derived, PER_CURRENCY_FALLBACK, code)
    return derived


def per_currency_table_problems(table: object, *, setting: str, least: int) -> list[str]:
    """What is wrong with a per-currency settings table (system checks refuse to start with it)."""
    if not isinstance(table, Mapping):
        return [f"{setting} must be a mapping of ISO 4217 codes to minor units (with a {PER_CURRENCY_FALLBACK!r}"
                f" entry), not {type(table).__name__}"]
    problems = []
    if PER_CURRENCY_FALLBACK not in table:
        problems.append(f"{setting} needs a {PER_CURRENCY_FALLBACK!r} entry (hundredths of the major unit) for"
                        " currencies it does not name")
    for code, amount in table.items():
        if code != PER_CURRENCY_FALLBACK and (not isinstance(code, str) or code != code.upper()
                                              or _exponent(code) is None):
            problems.append(f"{setting}: {code!r} is not an upper-case payable ISO 4217 code")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < least:
            problems.append(f"{setting}[{code!r}] must be an integer >= {least} (minor units), not {amount!r}")
    return problems
