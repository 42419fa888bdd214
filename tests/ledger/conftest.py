import uuid
from datetime import UTC, datetime

import pytest

from ledger.services import account_get_or_create
from ledger.types import AccountKey, AccountType


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def owner() -> str:
    return "mer_" + uuid.uuid4().hex[:20]


def make_account(owner: str, code: str, currency: str = "EUR", **flags) -> AccountKey:
    key = AccountKey(owner, code, currency)
    account_get_or_create(key=key, type=flags.pop("type", AccountType.ASSET), **flags)
    return key
