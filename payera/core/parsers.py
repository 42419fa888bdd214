"""The API's JSON parser: DRF's, refusing NUL characters anywhere in the document.

PostgreSQL text cannot hold NUL (0x00), so a `"\\u0000"` in any string (or key) would reach the
database as a DataError and answer 500; it is a 400 `invalid_request_error` here instead.
"""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError


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
