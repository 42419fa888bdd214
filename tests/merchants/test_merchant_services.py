"""Merchant and API key services."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from django.utils import timezone
from django_fsm import TransitionNotAllowed

from payera.core.errors import InvalidRequestError
from payera.merchants import keys
from payera.merchants.models import ApiKey, ApiKeyScope, Merchant
from payera.merchants.services import (
    api_key_create,
    api_key_revoke,
    merchant_create,
    merchant_reactivate,
    merchant_suspend,
)

pytestmark = pytest.mark.django_db


def test_merchant_create_keeps_the_connector_order():
    merchant = merchant_create(name="Shop", connectors=["beta", "alpha"], default_currency="eur")
    merchant.refresh_from_db()
    assert merchant.id.startswith("mer_")
    assert merchant.connectors == ["beta", "alpha"]
    assert merchant.default_currency == "EUR"
    assert merchant.status == "active"


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"name": ""}, "name"),
        ({"name": "x", "connectors": ["gamma"]}, "connectors"),
        ({"name": "x", "connectors": ["alpha", "alpha"]}, "connectors"),
        ({"name": "x", "connectors": []}, "connectors"),
        ({"name": "x", "default_currency": "XXY"}, "default_currency"),
        ({"name": "x", "settlement_delay_days": -1}, "settlement_delay_days"),
    ],
)
def test_merchant_create_rejects_invalid_input(kwargs, param):
    with pytest.raises(InvalidRequestError) as info:
        merchant_create(**kwargs)
    assert info.value.param == param
    assert not Merchant.objects.exists()


def test_suspend_and_reactivate_follow_the_state_machine(merchant):
    merchant_suspend(merchant_id=merchant.id)
    with pytest.raises(InvalidRequestError):
        merchant_suspend(merchant_id=merchant.id)
    merchant_reactivate(merchant_id=merchant.id)
    merchant.refresh_from_db()
    assert merchant.status == "active"
    with pytest.raises(TransitionNotAllowed):
        merchant.reactivate()


def test_api_key_is_shown_once_and_stored_only_as_a_hash(merchant):
    created = api_key_create(merchant=merchant, scope=ApiKeyScope.READ, name="ci")
    secret = created.secret
    assert secret.startswith("sk_test_") and len(secret) == len("sk_test_") + keys.SECRET_LENGTH
    row = ApiKey.objects.get(pk=created.api_key.pk)
    assert row.id.startswith("key_")
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.prefix == secret[:16] and secret.startswith(row.prefix)
    stored = [str(v) for v in ApiKey.objects.filter(pk=row.pk).values().get().values()]
    assert not any(secret in value for value in stored)
    assert row.scope == "read"


def test_keys_are_random_and_high_entropy(merchant):
    secrets_ = {api_key_create(merchant=merchant).secret for _ in range(20)}
    assert len(secrets_) == 20


def test_api_key_create_rejects_bad_scope_and_past_expiry(merchant):
    with pytest.raises(InvalidRequestError):
        api_key_create(merchant=merchant, scope="admin")
    with pytest.raises(InvalidRequestError):
        api_key_create(merchant=merchant, expires_at=timezone.now() - dt.timedelta(seconds=1))


def test_revoke_is_idempotent_and_keeps_the_first_time(api_key):
    first = api_key_revoke(api_key_id=api_key.api_key.id).revoked_at
    assert first is not None
    assert api_key_revoke(api_key_id=api_key.api_key.id).revoked_at == first


def test_revoke_scoped_to_a_merchant_does_not_reach_another_merchants_key(api_key):
    from payera.core.errors import NotFoundError
    from tests.merchants.factories import MerchantFactory

    with pytest.raises(NotFoundError):
        api_key_revoke(api_key_id=api_key.api_key.id, merchant=MerchantFactory())
    assert ApiKey.objects.get(pk=api_key.api_key.pk).revoked_at is None
