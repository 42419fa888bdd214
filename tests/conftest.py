"""Fixtures shared by the whole suite. Tests talk to the real PostgreSQL and Redis."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.merchants.factories import MerchantFactory, make_api_key

# Sandbox PSP processes (session), their webhook receiver and settings that point at them.
# The secret-leak scan of all log output of the session (tests/plugins/leakscan.py). A runtime
# database role (tests/fixtures/db_roles.py).
pytest_plugins = ["tests.psp_adapters.sandbox_fixtures", "tests.plugins.leakscan", "tests.fixtures.db_roles"]


@pytest.fixture(autouse=True)
def _closed_circuits():
    """Every test starts with the connectors' circuit breakers closed."""
    from tests.helpers import close_circuits

    close_circuits()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def merchant(db):
    return MerchantFactory()


@pytest.fixture
def api_key(merchant):
    """A write key of `merchant`: `.api_key` is the row, `.secret` the `sk_test_…` string."""
    return make_api_key(merchant)


@pytest.fixture
def merchant_client(api_key) -> APIClient:
    """An APIClient authenticated as `merchant` with a write key."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.secret}")
    return client


def client_for(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def make_merchant_client(db):
    """Factory fixture: `make_merchant_client(**merchant_fields, scope="write")` → (merchant, client)."""

    def make(scope: str = "write", **fields):
        merchant = MerchantFactory(**fields)
        return merchant, client_for(make_api_key(merchant, scope=scope).secret)

    return make
