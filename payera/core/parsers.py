"""The API's JSON parser: DRF's, refusing NUL characters and lone UTF-16 surrogates anywhere in
the document.

PostgreSQL text cannot hold NUL (0x00), nor UTF-8 a lone surrogate (JSON's `"\\ud800"` escape), so
such a string (or key) would reach the database as a DataError and answer 500; it is a 400
`invalid_request_error` here instead.
"""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from payera.core.errors import InvalidRequestError
from payera.core.masking import has_card_number
from payera.core.nul import has_unstorable


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if has_unstorable(data):
            raise ParseError("The request body may not contain NUL characters or unpaired UTF-16 surrogates.",
                             code="parameter_invalid")
        return data


# The places of a merchant request that hold an account number, tokenized at once
# (payments.method_types): the card's number and the SEPA debit's IBAN (whose digits may happen to
# pass the Luhn check).
PAYMENT_METHOD_DATA = "payment_method_data"
ACCOUNT_NUMBERS = {"card": "number", "sepa_debit": "iban"}


def _card_number_at(value, param: str, *, keep: str | None = None) -> str | None:
    """The param (`metadata[note]`) of the first string holding a card number in `value`, or None.
    `keep` names the one key of this object whose value is the account number itself."""
    if isinstance(value, str):
        return param if has_card_number(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and has_card_number(key):
                return param
            if key == keep:
                continue
            below = ACCOUNT_NUMBERS.get(key) if param == PAYMENT_METHOD_DATA else None
            found = _card_number_at(item, f"{param}[{key}]" if param else str(key), keep=below)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _card_number_at(item, f"{param}[{index}]")
            if found:
                return found
    return None


class MerchantJSONParser(JSONParser):
    """The merchant API's parser: a card number anywhere in the body but the account number of
    `payment_method_data` (a description, metadata, a return_url, a name, a refund reason, dispute
    evidence...) is refused (400, `param` naming where) before any view sees it, as a booking's
    reference already was — so it is never stored, answered, sent in events and webhooks, passed on
    to a PSP or shown in the back office. CONTRACT: "The full card number never appears in any
    answer, log line, event or admin page"; PCI DSS: never stored readable."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        param = _card_number_at(data, "")
        if param is not None:
            where = param or "The request body"
            raise InvalidRequestError(f"{where} must not contain a card number: it belongs in "
                                      "payment_method_data only.", param=param or None)
        return data
