"""The crawler's detector finds what it must and ignores ids, timestamps and visible prefixes."""

from tests.backoffice.leaks import card_numbers, ibans, leaks


def test_finds_luhn_valid_card_numbers_in_any_common_layout():
    assert card_numbers("pan 4242424242424242 here") == ["4242424242424242"]
    assert card_numbers("<td>4000 0566 5566 5556</td>") == ["4000056655665556"]
    assert card_numbers("5555-5555-5555-4444") == ["5555555555554444"]
    assert card_numbers("amex 378282246310005") == ["378282246310005"]


def test_ignores_what_is_not_a_card_number():
    assert card_numbers("4242424242424241") == []  # Luhn-invalid
    assert card_numbers("2026-11-23 00:55:20.123456+00:00") == []
    assert card_numbers("424242******4242 and last4 4242 and 1795395320") == []
    assert card_numbers("evt_3kTMd9 1.2345678901234567") == []


def test_finds_secrets_by_shape_but_not_visible_prefixes():
    assert leaks("prefix sk_test_Ab12Cd34 shown") == []
    assert leaks("key sk_live_Ab12Cd34Ef56Gh78Ij90")
    assert leaks("whsec_c2VjcmV0c2VjcmV0")
    assert leaks("token hvs.CAESIJ3x5yZ9AbCdEfGhIjKlMnOp")
    assert leaks("local:webhook:v1:AAECAwQFBgcICQ")
    assert leaks("vault:v2:8SDd3WHDOjf7mq69CyCqYjBXAiQQAVZRkFM13ok481zoCmHnSeDX9vyf7w==")
    assert leaks("pbkdf2_sha256$870000$abcdefgh$hash")
    assert leaks("nothing here", known_secrets=("here",)) == ["known secret here..."]


def test_finds_ibans_compact_grouped_and_lower_case_but_not_masked_ones():
    assert ibans("iban DE89370400440532013000 here") == ["DE89370400440532013000"]
    assert ibans("<td>NL39 RABO 0300 0652 64</td>") == ["NL39RABO0300065264"]
    assert ibans("at611904300234573201") == ["AT611904300234573201"]
    assert leaks("account GB82 WEST 1234 5698 7654 32 is shown")
    assert ibans("DE**************3000 and NL39RABO0300065265 (bad checksum) and PAYERA-0A1B2C3D4E5F") == []
    assert ibans("BP12ABCDEFGHIJKLMNOP mdt_3kTMd9x2 XX89370400440532013000") == []
