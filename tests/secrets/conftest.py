import uuid

import pytest

from tests.fixtures.vault import bao, bao_disposable  # noqa: F401 - fixtures


@pytest.fixture
def key_name() -> str:
    return "k-" + uuid.uuid4().hex[:16]


@pytest.fixture
def kv_path() -> str:
    return "tests/" + uuid.uuid4().hex[:16]
