from __future__ import annotations

import re

from payera.core.ids import new_id
from payera.core.logging import request_id_var

_INCOMING_OK = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")


class RequestIdMiddleware:
    """Gives every request an id: on `request.request_id`, on every log line, in `Request-Id`.

    A well-formed `X-Request-Id` from a trusted proxy is kept so traces join up.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-Id", "")
        request_id = incoming if _INCOMING_OK.match(incoming) else new_id("req")
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["Request-Id"] = request_id
        return response
