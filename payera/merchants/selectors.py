"""Reads of the merchants app."""

from __future__ import annotations

from django.db.models import QuerySet

from payera.core.rowsql import precompiled_select
from payera.merchants import keys
from payera.merchants.errors import ApiKeyNotFoundError, MerchantNotFoundError
from payera.merchants.models import ApiKey, Merchant


def merchant_get(*, merchant_id: str) -> Merchant:
    merchant = Merchant.objects.filter(pk=merchant_id).first()
    if merchant is None:
        raise MerchantNotFoundError()
    return merchant


def merchant_list() -> QuerySet[Merchant]:
    return Merchant.objects.all()


def api_key_get(*, api_key_id: str, merchant: Merchant | None = None) -> ApiKey:
    qs = ApiKey.objects.select_related("merchant")
    if merchant is not None:
        qs = qs.for_merchant(merchant)
    api_key = qs.filter(pk=api_key_id).first()
    if api_key is None:
        raise ApiKeyNotFoundError()
    return api_key


def api_key_list(*, merchant: Merchant) -> QuerySet[ApiKey]:
    return ApiKey.objects.for_merchant(merchant)


def _api_keys_of_prefix(prefix: str) -> QuerySet[ApiKey]:
    return ApiKey.objects.select_related("merchant").filter(prefix=prefix)[:10]


def api_key_find_by_secret(*, raw_key: str) -> ApiKey | None:
    """The key whose hash matches `raw_key`, compared in constant time; None if there is none.

    Looks rows up by the non-secret prefix and compares the full hash with `hmac.compare_digest`,
    so the database never sees (or indexes) anything derived from the secret part in a way a
    timing difference could reveal. Revoked/expired keys are returned: the caller says why not.
    """
    if not keys.is_well_formed(raw_key):
        return None
    found = None
    # read on every request, never cached (a revocation counts at once): the statement is compiled once
    for candidate in precompiled_select(ApiKey, _api_keys_of_prefix, keys.key_prefix(raw_key)):
        if keys.hash_matches(raw_key, candidate.secret_hash):
            found = candidate
    return found
