"""Writes of the merchants app: merchants, their status, and their API keys."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pycountry
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_fsm import can_proceed

from payera.core.masking import has_card_number
from payera.merchants import keys
from payera.merchants.errors import ApiKeyNotFoundError, MerchantInvalidError, MerchantNotFoundError, MerchantStateError
from payera.merchants.models import ApiKey, ApiKeyScope, Merchant

MAX_CONNECTORS = 10


@dataclass(frozen=True, slots=True)
class ApiKeyCreated:
    """A new key and its secret. The secret exists only here: it is never stored nor shown again."""

    api_key: ApiKey
    secret: str


def _validate_connectors(connectors: list[str] | None) -> list[str]:
    known = list(settings.PSP_CONNECTORS)
    if connectors is None:
        return known
    names = [c.strip() for c in connectors if c and c.strip()]
    if not names:
        raise MerchantInvalidError("At least one connector is required.", param="connectors")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise MerchantInvalidError(
            f"Unknown connector(s): {', '.join(unknown)}. Known: {', '.join(known)}.", param="connectors"
        )
    if len(set(names)) != len(names):
        raise MerchantInvalidError("A connector may appear only once.", param="connectors")
    if len(names) > MAX_CONNECTORS:
        raise MerchantInvalidError(f"At most {MAX_CONNECTORS} connectors.", param="connectors")
    return names


def _refuse_card_number(text: str, *, param: str) -> None:
    """A name shown on every back-office page that names the row never holds a card number (the
    admin's forms refuse one too); the message never quotes it."""
    if has_card_number(text):
        raise MerchantInvalidError(f"The {param} holds a card number, which may not be stored.", param=param)


def validate_connectors(connectors) -> list[str]:
    """A merchant's connector list as typed anywhere (command, admin): a list of known names, in
    routing order, each once. Raises `MerchantInvalidError`."""
    if not isinstance(connectors, list) or not all(isinstance(c, str) for c in connectors):
        raise MerchantInvalidError("Connectors are a list of connector names.", param="connectors")
    return _validate_connectors(connectors)


def validate_fee_schedule(name: str) -> str:
    """A fee schedule that exists (`PAYMENT_FEE_SCHEDULES`): an unknown name would not fail, the
    fee lookup falls back to `standard`, so a typo would charge the merchant the wrong fees."""
    known = sorted(getattr(settings, "PAYMENT_FEE_SCHEDULES", {}) or {})
    if name not in known:
        raise MerchantInvalidError(
            f"Unknown fee schedule: {name!r}. Known: {', '.join(known)}.", param="fee_schedule"
        )
    return name


def _validate_currency(code: str) -> str:
    normalized = (code or "").strip().upper()
    if len(normalized) != 3 or pycountry.currencies.get(alpha_3=normalized) is None:
        raise MerchantInvalidError(f"Unknown currency: '{code}'.", param="default_currency")
    return normalized


def merchant_lock(merchant_id: str) -> Merchant:
    merchant = Merchant.objects.select_for_update(of=("self",)).filter(pk=merchant_id).first()
    if merchant is None:
        raise MerchantNotFoundError()
    return merchant


@transaction.atomic(durable=True)
def merchant_create(
    *,
    name: str,
    connectors: list[str] | None = None,
    default_currency: str = "EUR",
    settlement_delay_days: int = 2,
    fee_schedule: str = "standard",
) -> Merchant:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise MerchantInvalidError("A merchant name of 1-200 characters is required.", param="name")
    _refuse_card_number(name, param="name")
    if not 0 <= settlement_delay_days <= 60:
        raise MerchantInvalidError("settlement_delay_days must be between 0 and 60.", param="settlement_delay_days")
    merchant = Merchant(
        name=name,
        connectors=_validate_connectors(connectors),
        default_currency=_validate_currency(default_currency),
        settlement_delay_days=settlement_delay_days,
        fee_schedule=validate_fee_schedule(fee_schedule),
    )
    merchant.save(force_insert=True)
    return merchant


@transaction.atomic(durable=True)
def merchant_suspend(*, merchant_id: str) -> Merchant:
    merchant = merchant_lock(merchant_id)
    if not can_proceed(merchant.suspend):
        raise MerchantStateError(f"A {merchant.status} merchant can not be suspended.")
    merchant.suspend()
    merchant.save(update_fields=["status", "updated_at"])
    return merchant


@transaction.atomic(durable=True)
def merchant_reactivate(*, merchant_id: str) -> Merchant:
    merchant = merchant_lock(merchant_id)
    if not can_proceed(merchant.reactivate):
        raise MerchantStateError(f"A {merchant.status} merchant can not be reactivated.")
    merchant.reactivate()
    merchant.save(update_fields=["status", "updated_at"])
    return merchant


@transaction.atomic(durable=True)
def api_key_create(
    *,
    merchant: Merchant,
    scope: str = ApiKeyScope.WRITE,
    name: str = "",
    expires_at: dt.datetime | None = None,
) -> ApiKeyCreated:
    if scope not in ApiKeyScope.values:
        raise MerchantInvalidError(f"scope must be one of {', '.join(ApiKeyScope.values)}.", param="scope")
    if expires_at is not None and expires_at <= timezone.now():
        raise MerchantInvalidError("expires_at must be in the future.", param="expires_at")
    name = (name or "").strip()
    if len(name) > ApiKey._meta.get_field("name").max_length:
        raise MerchantInvalidError("An API key name has at most 100 characters.", param="name")
    _refuse_card_number(name, param="name")
    for _ in range(3):
        secret = keys.generate_key()
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    merchant=merchant,
                    scope=scope,
                    name=name,
                    prefix=keys.key_prefix(secret),
                    secret_hash=keys.hash_key(secret),
                    expires_at=expires_at,
                )
        except IntegrityError:  # a 256-bit collision: practically never
            continue
        return ApiKeyCreated(api_key=api_key, secret=secret)
    raise RuntimeError("could not generate a unique API key")


@transaction.atomic(durable=True)
def api_key_revoke(*, api_key_id: str, merchant: Merchant | None = None) -> ApiKey:
    """Revoke a key now. Revoking a revoked key is a no-op that keeps the first revocation time."""
    qs = ApiKey.objects.select_for_update(of=("self",))
    if merchant is not None:
        qs = qs.filter(merchant=merchant)
    api_key = qs.filter(pk=api_key_id).first()
    if api_key is None:
        raise ApiKeyNotFoundError()
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_mark_used(*, api_key: ApiKey, now: dt.datetime | None = None) -> bool:
    """Record that a key was used, at most once per API_KEY_LAST_USED_RESOLUTION seconds.

    Called on every authenticated request, so it writes only when the stored value is stale: one
    conditional UPDATE (no row lock held, no transaction opened) that concurrent requests may race
    on harmlessly. Returns whether it wrote.
    """
    now = now or timezone.now()
    resolution = dt.timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION)
    if api_key.last_used_at is not None and now - api_key.last_used_at < resolution:
        return False
    updated = (
        ApiKey.objects.filter(pk=api_key.pk)
        .exclude(last_used_at__gte=now - resolution)
        .update(last_used_at=now)
    )
    if updated:
        api_key.last_used_at = now
    return bool(updated)
