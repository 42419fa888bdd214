"""Bearer API key authentication for every merchant endpoint.

`Authorization: Bearer sk_test_...` → the key → its merchant. Unknown, revoked or expired keys
and suspended merchants answer 401 `authentication_error`; a missing header makes the request
anonymous, which `ApiKeyPermission` turns into a 401 too (so public views such as the schema
still work with the same default classes).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication

from payera.audit.context import bind_actor, current_actor
from payera.audit.services import record_auth_failure
from payera.core.masking import mask_pans
from payera.merchants import keys
from payera.merchants.errors import (
    ApiKeyExpiredError,
    ApiKeyInvalidError,
    ApiKeyRevokedError,
    MerchantSuspendedError,
)
from payera.merchants.models import ApiKey, Merchant
from payera.merchants.selectors import api_key_find_by_secret
from payera.merchants.services import api_key_mark_used

AUTH_SCHEME = "Bearer"


@dataclass(frozen=True, slots=True)
class ApiKeyPrincipal:
    """`request.user` of a request authenticated by an API key (not a Django user)."""

    merchant: Merchant
    api_key: ApiKey
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_staff: bool = False
    is_active: bool = True
    pk: None = None

    def __str__(self) -> str:
        return self.api_key.id


def _remote_addr(request) -> str | None:
    """The client address the audit middleware already worked out (it knows the trusted proxies),
    else REMOTE_ADDR."""
    actor = current_actor()
    if actor is not None and actor.remote_addr:
        return actor.remote_addr
    return request.META.get("REMOTE_ADDR")


def _identifier(token: str) -> str:
    """What a failure is recorded with: the token's visible prefix, its card numbers masked first
    (a card number sent as the key: cut first, its first 16 digits would no longer look like one)."""
    return keys.key_prefix(mask_pans(token))


def _fail(request, error_cls, *, token: str, reason: str):
    record_auth_failure(
        kind="api_key",
        identifier=_identifier(token),
        reason=reason,
        remote_addr=_remote_addr(request),
        request_id=getattr(request, "request_id", None),
    )
    raise error_cls()


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != AUTH_SCHEME.lower() or not token:
            _fail(request, ApiKeyInvalidError, token=scheme, reason="malformed_header")
        api_key = api_key_find_by_secret(raw_key=token)
        if api_key is None:
            _fail(request, ApiKeyInvalidError, token=token, reason="unknown_key")
        now = timezone.now()
        if api_key.is_revoked():
            _fail(request, ApiKeyRevokedError, token=token, reason="revoked")
        if api_key.is_expired(now=now):
            _fail(request, ApiKeyExpiredError, token=token, reason="expired")
        merchant = api_key.merchant
        if not merchant.is_active:
            _fail(request, MerchantSuspendedError, token=token, reason="merchant_suspended")
        api_key_mark_used(api_key=api_key, now=now)
        previous = current_actor()
        token_ctx = bind_actor(
            user_id=previous.user_id if previous is not None else None,
            api_key_id=api_key.id,
            merchant_id=merchant.id,
            remote_addr=_remote_addr(request),
            request_id=getattr(request, "request_id", None),
        )
        request._request.payera_actor_token = token_ctx
        return ApiKeyPrincipal(merchant=merchant, api_key=api_key), api_key

    def authenticate_header(self, request) -> str:
        return f'{AUTH_SCHEME} realm="api"'
