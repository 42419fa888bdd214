"""The API's JSON parser: DRF's, refusing NUL characters anywhere in the document.

PostgreSQL text cannot hold NUL (0x00), so a `"\\u0000"` in any string (or key) would reach the
database as a DataError and answer 500; it is a 400 `invalid_request_error` here instead.
"""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from payera.core.masking import mask_card_numbers


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if _has_nul(data):
            raise ParseError("The request body may not contain NUL characters.", code="parameter_invalid")
        return data


# The places of a merchant request that hold an account number, tokenized at once
# (payments.method_types): the card's number and the SEPA debit's IBAN (whose digits may happen to
# pass the Luhn check).
PAYMENT_METHOD_DATA = "payment_method_data"
ACCOUNT_NUMBERS = {"card": "number", "sepa_debit": "iban"}


def _mask_method(method):
    """`payment_method_data` masked but for its account number (a holder's name may hold one too)."""
    if not isinstance(method, dict):
        return mask_card_numbers(method)
    out = {}
    for key, value in method.items():
        keep = ACCOUNT_NUMBERS.get(key) if isinstance(key, str) else None
        if keep and isinstance(value, dict):
            out[key] = {k: v if k == keep else mask_card_numbers(v) for k, v in value.items()}
        else:
            out[key] = mask_card_numbers(value)
    return out


class MerchantJSONParser(JSONParser):
    """The merchant API's parser: a card number anywhere else in the body (a description, metadata,
    a return_url, a refund reason, dispute evidence...) is masked as logs mask it (`411111******1111`)
    before any view sees it, so it is never stored in clear, answered, sent in events and webhooks,
    passed on to a PSP or shown in the back office. CONTRACT: "The full card number never appears
    in any answer, log line, event or admin page"; PCI DSS keeps it unreadable wherever stored."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if not isinstance(data, dict):
            return mask_card_numbers(data)
        return {k: _mask_method(v) if k == PAYMENT_METHOD_DATA else mask_card_numbers(v) for k, v in data.items()}
