"""Tenant scoping helpers for every model a merchant owns.

Domain models that belong to a merchant use `MerchantScopedQuerySet` (`Model.objects.for_merchant(m)`)
and their selectors fetch single objects through `owned_get`, so another merchant's id is a 404
exactly like an id that does not exist. tests/merchants/test_tenant_isolation.py proves it for
every route under /v1/.
"""

from __future__ import annotations

from typing import TypeVar

from django.db import models

from payera.core.errors import NotFoundError
from payera.merchants.models import Merchant

M = TypeVar("M", bound=models.Model)


class MerchantScopedQuerySet(models.QuerySet):
    def for_merchant(self, merchant: Merchant) -> MerchantScopedQuerySet:
        if not isinstance(merchant, Merchant):
            raise TypeError("for_merchant() needs a Merchant instance")
        return self.filter(merchant=merchant)


def owned_get(
    queryset: models.QuerySet[M], *, merchant: Merchant, pk: str, error: type[NotFoundError] = NotFoundError
) -> M:
    """The object `pk` owned by `merchant`, or `error` (404) whether it is missing or someone else's."""
    if not isinstance(merchant, Merchant):
        raise TypeError("owned_get() needs a Merchant instance")
    obj = queryset.filter(merchant=merchant, pk=pk).first() if isinstance(pk, str) and pk else None
    if obj is None:
        raise error()
    return obj
