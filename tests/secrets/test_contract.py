"""The secrets contract against every backend: local (PostgreSQL), Vault (real OpenBao), memory."""

import pytest

from payera.secrets.backends.local import LocalBackend, new_master_key_entry
from payera.secrets.backends.memory import MemoryBackend
from tests.fixtures.vault import vault_backend_for
from tests.secrets.contract import SecretsBackendContract


@pytest.mark.django_db
class TestLocalBackend(SecretsBackendContract):
    @pytest.fixture
    def backend(self):
        return LocalBackend(master_keys=new_master_key_entry("m1"))


class TestVaultBackend(SecretsBackendContract):
    @pytest.fixture
    def backend(self, bao):
        return vault_backend_for(bao, role="payera")


class TestMemoryBackend(SecretsBackendContract):
    @pytest.fixture
    def backend(self):
        return MemoryBackend()
