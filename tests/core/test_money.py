import pytest
from hypothesis import given
from hypothesis import strategies as st

from payera.core.money import (
    UnknownCurrencyError,
    currency_exponent,
    currency_normalize,
    minor_from_decimal_string,
    minor_to_decimal_string,
)


def test_exponents_come_from_iso_4217():
    assert (currency_exponent("JPY"), currency_exponent("EUR"), currency_exponent("KWD")) == (0, 2, 3)


@pytest.mark.parametrize("value", ["eur", "EUR", "Eur"])
def test_currency_is_answered_upper_case(value):
    assert currency_normalize(value) == "EUR"


@pytest.mark.parametrize("value", ["XYZ", "EURO", "", None, 978, "E1R", "XAU"])
def test_unknown_or_unpayable_currency_is_400(value):
    with pytest.raises(UnknownCurrencyError) as info:
        currency_normalize(value)
    assert info.value.http_status == 400 and info.value.param == "currency"


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [("12.34", "EUR", 1234), ("-5", "EUR", -500), ("1000", "JPY", 1000), ("1.234", "KWD", 1234), ("0.10", "USD", 10)],
)
def test_decimal_strings_parse_exactly(text, currency, minor):
    assert minor_from_decimal_string(text, currency) == minor


@pytest.mark.parametrize(("text", "currency"), [("12.345", "EUR"), ("1.5", "JPY"), ("abc", "EUR"), ("NaN", "EUR")])
def test_decimal_strings_never_round(text, currency):
    with pytest.raises(ValueError):
        minor_from_decimal_string(text, currency)


@given(st.integers(min_value=-(10**12), max_value=10**12), st.sampled_from(["EUR", "JPY", "KWD", "USD"]))
def test_round_trip_is_exact(amount, currency):
    assert minor_from_decimal_string(minor_to_decimal_string(amount, currency), currency) == amount
