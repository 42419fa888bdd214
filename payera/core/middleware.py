from __future__ import annotations

import re

from django.http import JsonResponse

from payera.core.api import error_body
from payera.core.ids import new_id
from payera.core.logging import request_id_var
from payera.core.masking import mask_text

_INCOMING_OK = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")


def _incoming_ok(incoming: str) -> bool:
    return bool(_INCOMING_OK.match(incoming)) and mask_text(incoming) == incoming


class RequestIdMiddleware:
    """Gives every request an id: on `request.request_id`, on every log line, in `Request-Id`.

    A well-formed `X-Request-Id` (from a proxy, so traces join up) is kept — unless it carries
    what masking hides (a card number, an IBAN, a secret): any client can send the header, and the
    id is answered in `Request-Id`, put on every log line and stored in the audit trail, none of
    which may hold such a value. Such a header is replaced by a fresh id (never echoed or stored).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-Id", "")
        request_id = incoming if _incoming_ok(incoming) else new_id("req")
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["Request-Id"] = request_id
        return response


class NulByteGuardMiddleware:
    """A NUL character in the path or query string is answered 400, whatever the view.

    PostgreSQL text cannot hold NUL (0x00): such a value reaching a query filter raised a
    DataError, i.e. a 500 (found by the API fuzzer, tests/reliability). Bodies are checked by
    `payera.core.parsers.JSONParser`.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()
        ):
            return JsonResponse(
                error_body("invalid_request_error", "parameter_invalid", "Parameters may not contain NUL characters."),
                status=400,
            )
        return self.get_response(request)
