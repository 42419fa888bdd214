"""What counts as a card number (payera.core.masking, docs/decisions/0004): a Luhn-valid run of
digits is one only with a scheme's prefix and a length that scheme issues — an order id, a numeric
reference or a URL's path segment passing the Luhn check (one in ten does) is neither refused nor
masked — and a card number among other digits ("qty 1 4111…", "4111 1111 1111 1111 123") is found
in its groups. Masking reaches its fixed point in one call."""

from __future__ import annotations

import json
import random
from urllib.parse import urlencode

import pytest
from django.http import QueryDict

from payera.backoffice.sites import _masked_query
from payera.core.masking import (
    data_has_card_number,
    has_card_number,
    is_card_number,
    luhn_valid,
    mask_account_numbers,
    mask_card_numbers,
    mask_json_text,
    mask_text,
)

PAN = "4111111111111111"
MASKED = "411111******1111"
CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
# Luhn-valid, but no scheme issues them: an order id, a URL's path segment, an Adyen-like reference
ORDER_ID = "1122334455667788990"
REFERENCE = "8815123456789013"
CONTRACT_CARDS = ("4242424242424242", "5555555555554444", "4000000000000002", "4000000000009995",
                  "4000000000000069", "4000000000000119", "4000000000003220", "4000008400001629",
                  "4000000000007726", "4000000000000259", "4000000000000341", "4000000000005126")  # fmt: skip
CONTRACT_IBANS = ("DE89370400440532013000", "AT611904300234573201", "NL39RABO0300065264")
AMONG_OTHER_DIGITS = {
    f"paid with {PAN} 123": f"paid with {MASKED} 123",
    "card 4111 1111 1111 1111 123": f"card {MASKED} 123",
    "4111-1111-1111-1111-737": f"{MASKED}-737",
    f"qty 1 {PAN}": f"qty 1 {MASKED}",
}
FUZZED = "2353 6011111111111117 617851754 6587405756405 2146990217"


def test_a_luhn_valid_number_without_a_schemes_prefix_and_length_is_no_card_number():
    for number in (ORDER_ID, REFERENCE, "12345678901234569"):
        assert luhn_valid(number) and not is_card_number(number) and not has_card_number(number), number
        assert mask_text(f"order {number}") == f"order {number}"
    url = f"https://shop.example/orders/{ORDER_ID}/return"
    assert not has_card_number(url) and mask_text(url) == url
    assert is_card_number("4222222222222")  # Visa has 13 digits
    assert not is_card_number("42424242424242")  # but no 14 (Luhn-valid)
    assert luhn_valid("42424242424242")
    assert not is_card_number("378282246310005"[:-1] + "0") and is_card_number("378282246310005")  # Amex: 15
    assert is_card_number("6011111111111117") and is_card_number("3530111333300000")  # Discover, JCB
    assert is_card_number("36227206271667") and is_card_number("2223003122003222")  # Diners 14, Mastercard 2-series


@pytest.mark.parametrize("prefix", ["2200", "2204", "6071", "5081", "8100", "8200", "9792", "6304"])
def test_cards_of_regional_schemes_are_card_numbers_too(prefix):
    """Mir, RuPay, UnionPay 81, Troy and Maestro UK: a log or a stored reason must not keep their
    numbers in clear because the scheme is not one of the big five."""
    body = prefix + "00000000000"
    number = next(body + str(d) for d in range(10) if luhn_valid(body + str(d)))
    assert len(number) == 16 and is_card_number(number), number
    assert mask_text(f"card {number}") == f"card {number[:6]}******{number[-4:]}"


def test_every_sandbox_card_of_the_contract_is_a_card_number_and_its_ibans_are_not():
    for number in CONTRACT_CARDS:
        assert is_card_number(number) and has_card_number(
            f"x {number[:4]} {number[4:8]} {number[8:12]} {number[12:]} y"
        )
        assert mask_text(number) == number[:6] + "******" + number[-4:]
    for iban in CONTRACT_IBANS:
        assert not has_card_number(iban), iban


@pytest.mark.parametrize("text", AMONG_OTHER_DIGITS)
def test_a_card_number_among_other_digits_is_found_and_masked(text):
    assert has_card_number(text)
    assert mask_text(text) == AMONG_OTHER_DIGITS[text]
    assert mask_card_numbers({"q": text}) == {"q": AMONG_OTHER_DIGITS[text]}
    assert mask_account_numbers(text) == AMONG_OTHER_DIGITS[text]


def test_a_files_bytes_hold_a_card_number_exactly_where_the_detector_finds_one():
    """`data_has_card_number` (a settlement report's bytes, scanned fast before any per-row work)
    answers as `has_card_number` does on the text, whatever the lines, chunks and separators; a
    plain report (10-digit ids, dates, amounts) and long numbers that are no card number pass."""
    rng = random.Random(14)
    pieces = [*CONTRACT_CARDS, PAN, "4111 1111 1111 1111", "5555-5555-5555-4444", ORDER_ID, REFERENCE, "2026-12-07"]
    for _ in range(3000):
        words = [
            rng.choice(pieces) if rng.random() < 0.2 else str(rng.randint(0, 10 ** rng.randint(1, 19)))
            for _ in range(rng.randint(1, 6))
        ]
        text = rng.choice([" ", "-", ",", ";", " x ", "\n"]).join(words)
        expected = has_card_number(text)
        assert data_has_card_number(text.encode()) == expected, text
        assert data_has_card_number(text.encode(), chunk=7) == expected, text  # small chunks of lines
    plain = "capture,2026-12-07,PB-20261207-EUR,auth_b12,att_b0000000012,op_b12,cap_b0000000012,EUR,1012,20,992\n"
    assert not data_has_card_number((plain * 1000).encode())
    assert not data_has_card_number(b"") and not data_has_card_number(f"{ORDER_ID},{REFERENCE}\n".encode())
    assert data_has_card_number((plain * 1000 + f"x,{PAN[:8]} {PAN[8:]},y\n").encode(), chunk=64)


def test_masking_reaches_its_fixed_point_in_one_call():
    masked = mask_text(FUZZED)
    assert masked == "2353 601111******1117 617851754 6587405756405 2146990217"
    assert mask_text(masked) == masked and mask_card_numbers(masked) == masked
    once = _masked_query(QueryDict(urlencode({"q": FUZZED})))
    assert once is not None and _masked_query(QueryDict(once)) is None
    rng = random.Random(12)
    pieces = [*CONTRACT_CARDS, PAN, "6011111111111117", "378282246310005", ORDER_ID, REFERENCE]
    for _ in range(3000):
        words = []
        for _ in range(rng.randint(1, 6)):
            kind = rng.random()
            if kind < 0.3:
                words.append(rng.choice(pieces))
            elif kind < 0.4:
                words.append("DE89370400440532013000")
            else:
                words.append("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 19))))
        text = rng.choice([" ", "-", " x "]).join(words)
        for mask in (mask_text, mask_account_numbers, mask_card_numbers):
            once = mask(text)
            assert mask(once) == once, text
        assert not has_card_number(mask_text(text)), text


def test_staff_text_masks_card_numbers_and_ibans_only():
    assert mask_account_numbers("ticket number=48213") == "ticket number=48213"
    assert (mask_account_numbers("IBAN DE89370400440532013000 confirmed by phone")
            == "IBAN DE****************3000 confirmed by phone")  # fmt: skip
    assert (
        mask_text("IBAN DE89370400440532013000 confirmed by phone") == "IBAN DE****************3000 confirmed by phone"
    )
    assert mask_account_numbers("iban nl39 rabo 0300 0652 64 ok") == "iban NL************5264 ok"
    assert mask_account_numbers(f"card {PAN}, token=abc") == f"card {MASKED}, token=abc"


def test_a_json_webhook_body_stays_valid_json_when_an_object_is_masked():
    body = json.dumps({"token": {"a": 1}, "card": {"number": PAN}, "pan": 4111111111111111,
                       "note": f"card {PAN}", PAN: "as a key", "ok": [1, "x"]})  # fmt: skip
    masked = json.loads(mask_json_text(body))
    assert masked == {"token": "***", "card": {"number": "***"}, "pan": "***", "note": f"card {MASKED}",
                      MASKED: "as a key", "ok": [1, "x"]}  # fmt: skip
    assert json.loads(mask_json_text(json.dumps({"n": 4111111111111111}))) == {"n": MASKED}
    plain = '{"id": "evt_1",  "amount": 1000}'
    assert mask_json_text(plain) == plain  # nothing to mask: kept byte for byte
    assert mask_json_text(f"card={PAN}&cvc=737") == f"card={MASKED}&cvc=***"  # not JSON: as text


@pytest.mark.django_db
def test_numeric_ids_pass_the_merchant_api_and_card_numbers_among_digits_do_not(make_merchant_client, psp_settings):
    _, client = make_merchant_client(connectors=["alpha"])
    paid = client.post("/v1/payments", {
        "amount": 1000, "currency": "EUR", "payment_method_data": CARD, "description": f"order {ORDER_ID}",
        "metadata": {"order_id": ORDER_ID, REFERENCE: "ref"},
        "return_url": f"https://shop.example/orders/{ORDER_ID}/return"}, format="json")  # fmt: skip
    assert paid.status_code == 201, paid.content
    assert paid.json()["metadata"] == {"order_id": ORDER_ID, REFERENCE: "ref"}
    hook = client.post("/v1/webhook_endpoints", {"url": f"http://127.0.0.1:9/hooks/{ORDER_ID}",
                                                 "enabled_events": ["*"]}, format="json")  # fmt: skip
    assert hook.status_code == 201 and hook.json()["url"].endswith(ORDER_ID), hook.content
    for text in AMONG_OTHER_DIGITS:
        refused = client.post("/v1/payments", {"amount": 1000, "currency": "EUR", "payment_method_data": CARD,
                                               "description": text}, format="json")  # fmt: skip
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "description", text


@pytest.mark.django_db
def test_the_sepa_debit_ibans_of_the_contract_still_pass(make_merchant_client, psp_settings):
    _, client = make_merchant_client(connectors=["beta"])
    for iban in CONTRACT_IBANS:
        sepa = {"type": "sepa_debit", "sepa_debit": {"iban": iban, "account_holder_name": "Ada Lovelace"}}
        response = client.post("/v1/payments", {"amount": 700, "currency": "EUR", "payment_method_data": sepa},
                               format="json")  # fmt: skip
        assert response.status_code == 201, (iban, response.content)
