"""Typed errors of the merchants app."""

from __future__ import annotations

from rest_framework import exceptions as drf

from payera.core.errors import AuthenticationError, InvalidRequestError, NotFoundError, PermissionDeniedError


class ApiKeyRejectedError(AuthenticationError, drf.AuthenticationFailed):
    """Raised by the authentication class. Also a DRF `AuthenticationFailed`, so DRF marks the
    request unauthenticated and adds `WWW-Authenticate`; rendered by its PayeraError shape."""


class ApiKeyMissingError(AuthenticationError):
    code = "api_key_missing"
    default_message = "No API key provided. Send it as 'Authorization: Bearer sk_test_...'."


class ApiKeyInvalidError(ApiKeyRejectedError):
    code = "api_key_invalid"
    default_message = "Invalid API key provided."


class ApiKeyRevokedError(ApiKeyRejectedError):
    code = "api_key_revoked"
    default_message = "This API key has been revoked."


class ApiKeyExpiredError(ApiKeyRejectedError):
    code = "api_key_expired"
    default_message = "This API key has expired."


class MerchantSuspendedError(ApiKeyRejectedError):
    code = "merchant_suspended"
    default_message = "This merchant account is suspended."


class ApiKeyReadOnlyError(PermissionDeniedError):
    code = "api_key_read_only"
    default_message = "This API key has the 'read' scope and can not make changes."


class MerchantNotFoundError(NotFoundError):
    default_message = "No such merchant."


class ApiKeyNotFoundError(NotFoundError):
    default_message = "No such API key."


class MerchantInvalidError(InvalidRequestError):
    pass


class MerchantStateError(InvalidRequestError):
    code = "merchant_state_invalid"
