from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payera.core.masking import luhn_valid
from payments.cards import CardInvalidError, card_brand, card_validate

TODAY = date(2026, 11, 23)


def validate(**overrides):
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"} | overrides
    return card_validate(**card, today=TODAY)


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("3566002020360505", "jcb"),
        ("36227206271667", "diners"),
        ("6200000000000005", "unionpay"),
    ],
)
def test_brand_detection(number, brand):
    assert card_brand(number) == brand


def test_valid_card_keeps_only_what_is_needed():
    card = validate(number="4242 4242 4242 4242")
    assert (card.number, card.bin, card.last4, card.brand) == ("4242424242424242", "424242", "4242", "visa")
    assert "4242424242424242" not in repr(card) and "123" not in repr(card) and "123" not in str(card)


@pytest.mark.parametrize(
    ("overrides", "param", "code"),
    [
        ({"number": "4242424242424241"}, "payment_method_data[card][number]", "incorrect_number"),
        ({"number": "42424242abcd4242"}, "payment_method_data[card][number]", "invalid_number"),
        ({"number": 4242424242424242}, "payment_method_data[card][number]", "card_invalid"),
        ({"exp_month": 13}, "payment_method_data[card][exp_month]", "invalid_expiry_month"),
        ({"exp_month": True}, "payment_method_data[card][exp_month]", "invalid_expiry_month"),
        ({"exp_year": 2025}, "payment_method_data[card][exp_year]", "expired_card"),
        ({"exp_year": 2026, "exp_month": 10}, "payment_method_data[card][exp_month]", "expired_card"),
        ({"exp_year": 2199}, "payment_method_data[card][exp_year]", "invalid_expiry_year"),
        ({"cvc": "12"}, "payment_method_data[card][cvc]", "invalid_cvc"),
        ({"cvc": 123}, "payment_method_data[card][cvc]", "invalid_cvc"),
    ],
)
def test_invalid_cards_are_400_with_param(overrides, param, code):
    with pytest.raises(CardInvalidError) as info:
        validate(**overrides)
    assert (info.value.http_status, info.value.param, info.value.code) == (400, param, code)


def test_this_month_is_still_valid():
    assert validate(exp_year=2026, exp_month=11).exp_month == 11
    assert validate(exp_year=30).exp_year == 2030


@given(st.text(alphabet="0123456789", min_size=12, max_size=18))
def test_luhn_check_digit_completes_any_prefix(prefix):
    for d in "0123456789":
        if luhn_valid(prefix + d):
            validate(number=prefix + d)  # never raises on the number
            break
    else:
        pytest.fail("no check digit found")
