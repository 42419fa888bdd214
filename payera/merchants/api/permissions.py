from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from payera.merchants.errors import ApiKeyMissingError, ApiKeyReadOnlyError
from payera.merchants.models import ApiKey, ApiKeyScope


class ApiKeyPermission(BasePermission):
    """Deny by default: an API key is required; a `read` key may only use safe methods (403)."""

    def has_permission(self, request, view) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            raise ApiKeyMissingError()
        if request.method not in SAFE_METHODS and api_key.scope != ApiKeyScope.WRITE:
            raise ApiKeyReadOnlyError()
        return True
