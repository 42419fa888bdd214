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


def test_memory_backend_reaches_keys_only_through_the_versions_hook():
    """Subclasses (e.g. tests.events.shared_secrets) make keys deterministic by overriding
    `_versions`; every operation must go through it."""
    import hashlib

    class Deterministic(MemoryBackend):
        def _versions(self, key_name):
            with self._lock:
                return self._keys.setdefault(key_name, [hashlib.sha256(key_name.encode()).digest()])

    ciphertext = Deterministic().encrypt("shared", b"x")
    assert Deterministic().decrypt("shared", ciphertext) == b"x"  # another "process"
    assert Deterministic().keyed_hash("shared", b"x") == Deterministic().keyed_hash("shared", b"x")
    assert Deterministic().rotate_key("fresh") == 1
