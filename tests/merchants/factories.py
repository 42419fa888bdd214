"""Factories for merchants and keys. Keys go through the service (the only way to get a secret)."""

from __future__ import annotations

import factory
from factory.django import DjangoModelFactory

from payera.merchants.models import Merchant
from payera.merchants.services import ApiKeyCreated, api_key_create


class MerchantFactory(DjangoModelFactory[Merchant]):
    class Meta:
        model = Merchant

    name = factory.Sequence(lambda n: f"Merchant {n}")
    default_currency = "EUR"
    connectors = factory.LazyFunction(lambda: ["alpha", "beta"])


def make_api_key(merchant: Merchant, **kwargs) -> ApiKeyCreated:
    return api_key_create(merchant=merchant, **kwargs)
