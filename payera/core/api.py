"""One error shape for every error the API can answer, DRF's and Django's own.

`exception_handler` is DRF's; the `handler4xx/500` functions are Django's URLconf handlers for
errors raised outside DRF views (unknown URLs, a crash in middleware). A 500 never carries a
stack trace, SQL or a secret: the detail goes to the (masked) log with the request id. Nor does
any other answer echo a card number or a secret that the request carried: messages and params that
quote the input (`No such object for starting_after: '…'`, DRF's `"…" is not a valid choice.`,
`metadata[<key>]`) are masked as log lines are (payera.core.masking).
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from payera.core.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PayeraError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
)
from payera.core.masking import mask_text

logger = logging.getLogger("payera.api")


def error_body(type_: str, code: str, message: str, param: str | None = None) -> dict:
    body = {"type": type_, "code": code, "message": message}
    if param:
        body["param"] = param
    return {"error": body}


def _first_validation_error(detail, prefix: str = "") -> tuple[str | None, str, str]:
    """(param, code, message) of the first field error in a DRF ValidationError detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            param = f"{prefix}[{name}]" if prefix and name else (name or prefix)
            found = _first_validation_error(value, param)
            if found[1]:
                return found
        return (prefix or None, "", "")
    if isinstance(detail, list):
        for item in detail:
            found = _first_validation_error(item, prefix)
            if found[1]:
                return found
        return (prefix or None, "", "")
    code = getattr(detail, "code", None) or "invalid"
    return (prefix or None, _normalize_code(code), str(detail))


# DRF's own field codes: a value of the wrong size, range or kind is `parameter_invalid` (docs/api.md
# "Errors"), not DRF's vocabulary (`max_length` leaked for a description of 1001 characters).
_DRF_INVALID_CODES = frozenset({
    "invalid", "max_length", "min_length", "max_value", "min_value", "max_string_length", "invalid_choice",
    "not_a_list", "not_a_dict", "empty", "max_digits", "max_decimal_places", "max_whole_digits", "overflow",
    "date", "datetime", "make_aware", "surrogate_characters_not_allowed", "null_characters_not_allowed",
    "incorrect_type", "does_not_exist", "unique",
})


def _normalize_code(code: str) -> str:
    if code in ("required", "null", "blank"):
        return "parameter_missing"
    return "parameter_invalid" if code in _DRF_INVALID_CODES else code


def exception_handler(exc, context) -> Response | None:
    response = _exception_response(exc, context)
    error = response.data.get("error") if response is not None and isinstance(response.data, dict) else None
    if isinstance(error, dict):
        for field in ("message", "param"):
            if isinstance(error.get(field), str):
                error[field] = mask_text(error[field])
    return response


def _exception_response(exc, context) -> Response | None:
    headers = {}
    if isinstance(exc, PayeraError):
        return Response(exc.to_dict(), status=exc.http_status)
    if isinstance(exc, DjangoValidationError):
        exc = drf.ValidationError(detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, RequestDataTooBig):
        # A body over DATA_UPLOAD_MAX_MEMORY_SIZE: was an unhandled error (500) before.
        return Response(
            error_body("invalid_request_error", "request_too_large", "The request body is too large."), status=413
        )
    if isinstance(exc, Http404):
        err: PayeraError = NotFoundError()
    elif isinstance(exc, DjangoPermissionDenied):
        err = PermissionDeniedError()
    elif isinstance(exc, drf.ValidationError):
        param, code, message = _first_validation_error(exc.detail)
        if param and message:
            message = f"{param}: {message}"
        return Response(
            error_body("invalid_request_error", code or "parameter_invalid", message or "Invalid request.", param),
            status=400,
        )
    elif isinstance(exc, drf.ParseError):
        if getattr(exc.detail, "code", None) == "parameter_invalid":  # parsed, but refused (NUL)
            err = InvalidRequestError(str(exc.detail), code="parameter_invalid")
        else:
            err = InvalidRequestError("The request body is not valid JSON.", code="invalid_json")
    elif isinstance(exc, drf.UnsupportedMediaType):
        err = InvalidRequestError("Send the request body as application/json.", code="unsupported_media_type")
    elif isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        err = AuthenticationError(str(exc.detail) if isinstance(exc, drf.AuthenticationFailed) else None)
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    elif isinstance(exc, drf.PermissionDenied):
        err = PermissionDeniedError()
    elif isinstance(exc, drf.NotFound):
        err = NotFoundError()
    elif isinstance(exc, drf.MethodNotAllowed):
        resp = Response(
            error_body("invalid_request_error", "method_not_allowed", str(exc.detail)), status=405
        )
        return resp
    elif isinstance(exc, drf.NotAcceptable):
        return Response(error_body("invalid_request_error", "not_acceptable", str(exc.detail)), status=406)
    elif isinstance(exc, drf.Throttled):
        err = RateLimitError()
        if exc.wait:
            headers["Retry-After"] = str(int(exc.wait) + 1)
    elif isinstance(exc, (DatabaseOperationalError, DatabaseInterfaceError)):
        # The database went away (restart, failover) or refused (deadlock, serialization): a
        # retry may succeed. Logged without the driver's message (it may quote SQL or values).
        logger.warning("database unavailable in API view: %s", type(exc).__name__,
                       extra={"view": type(context.get("view")).__name__})
        err = ServiceUnavailableError(
            "The service is temporarily unavailable. Retry with the same Idempotency-Key.", code="service_unavailable"
        )
        response = Response(err.to_dict(), status=err.http_status, headers={"Retry-After": "5"})
        response.database_unavailable = True  # MerchantApiView leaves the Idempotency-Key claimed
        return response
    elif isinstance(exc, drf.APIException):
        # Any other DRF error: keep its status, but never its internals.
        status = exc.status_code
        kind = "invalid_request_error" if status < 500 else "api_error"
        return Response(error_body(kind, exc.default_code, str(exc.detail)), status=status)
    else:
        logger.exception("unhandled error in API view", extra={"view": type(context.get("view")).__name__})
        err = PayeraError()
    return Response(err.to_dict(), status=err.http_status, headers=headers)


def _json(status: int, type_: str, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(type_, code, message), status=status)


def handler400(request, exception=None):
    return _json(400, "invalid_request_error", "bad_request", "The request is invalid.")


def handler403(request, exception=None):
    return _json(403, "permission_error", "permission_denied", "You do not have permission for this request.")


def handler404(request, exception=None):
    return _json(404, "invalid_request_error", "resource_missing", "Unrecognized request URL or no such object.")


def handler500(request):
    return _json(500, "api_error", "api_error", "An internal error occurred. Quote the Request-Id header to support.")


def csrf_failure(request, reason=""):
    return _json(403, "permission_error", "csrf_failed", "CSRF verification failed.")
