"""Typed errors with the contract's error shape (type, code, HTTP status, param).

Every app's errors subclass `PayeraError`; one DRF exception handler renders them as
`{"error": {"type", "code", "message", "param"}}`.
"""

from __future__ import annotations

from typing import ClassVar


class PayeraError(Exception):
    type: ClassVar[str] = "api_error"
    code: ClassVar[str] = "api_error"
    http_status: ClassVar[int] = 500
    default_message: ClassVar[str] = "An internal error occurred."

    def __init__(self, message: str | None = None, *, param: str | None = None, code: str | None = None):
        self.message = message or self.default_message
        self.param = param
        if code is not None:
            self.code = code  # type: ignore[misc]
        super().__init__(self.message)

    def to_dict(self) -> dict:
        body = {"type": self.type, "code": self.code, "message": self.message}
        if self.param:
            body["param"] = self.param
        return {"error": body}


class InvalidRequestError(PayeraError):
    type = "invalid_request_error"
    code = "parameter_invalid"
    http_status = 400
    default_message = "The request is invalid."


class NotFoundError(InvalidRequestError):
    code = "resource_missing"
    http_status = 404
    default_message = "No such object."


class AuthenticationError(PayeraError):
    type = "authentication_error"
    code = "authentication_failed"
    http_status = 401
    default_message = "Invalid API key provided."


class PermissionDeniedError(PayeraError):
    type = "permission_error"
    code = "permission_denied"
    http_status = 403
    default_message = "This API key does not have the permission for this request."


class IdempotencyError(PayeraError):
    type = "idempotency_error"
    code = "idempotency_error"
    http_status = 409


class RateLimitError(PayeraError):
    type = "rate_limit_error"
    code = "rate_limited"
    http_status = 429
    default_message = "Too many requests. Retry later."


class ServiceUnavailableError(PayeraError):
    """A dependency we need (secrets backend, database) is unavailable: fail closed."""

    type = "api_error"
    code = "service_unavailable"
    http_status = 503
    default_message = "A required service is temporarily unavailable. Retry later."
