"""Public functions of the secrets app; other apps import only these.

Every function may raise `SecretsUnavailableError` (a 503 `api_error` through the API's
exception handler): callers fail closed and never store the clear value instead. A request the
backend refuses as wrong raises `SecretsRequestError` (500; `SecretValueInvalidError` for a KV
value that is not JSON). All are `PayeraError`s with a message safe to show staff or print: the
operation and the KV path, never the value or the backend's own text.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from payera.secrets.backends.base import (  # noqa: F401 - re-exported for callers
    CiphertextInvalidError,
    KeyNotFoundError,
    SecretNotFoundError,
    SecretsBackend,
    SecretsRequestError,
    SecretsUnavailableError,
    SecretValueInvalidError,
    check_key_name,
)

BACKENDS = {
    "local": "payera.secrets.backends.local.LocalBackend",
    "vault": "payera.secrets.backends.vault.VaultBackend",
    "memory": "payera.secrets.backends.memory.MemoryBackend",
}
_SETTINGS = {
    "SECRETS_BACKEND",
    "LOCAL_MASTER_KEYS",
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "VAULT_ROLE_ID",
    "VAULT_SECRET_ID",
    "VAULT_APPROLE_MOUNT",
    "VAULT_KV_MOUNT",
    "VAULT_KV_PREFIX",
    "VAULT_TRANSIT_MOUNT",
    "VAULT_TIMEOUT",
    "VAULT_CACERT",
}


@lru_cache(maxsize=1)
def get_backend() -> SecretsBackend:
    name = settings.SECRETS_BACKEND
    return import_string(BACKENDS.get(name, name))()


def _clear(**kwargs) -> None:
    if kwargs.get("setting") in _SETTINGS:
        get_backend.cache_clear()


setting_changed.connect(_clear)


def secret_get(path: str) -> dict:
    return get_backend().secret_get(path)


def secret_put(path: str, data: dict) -> None:
    get_backend().secret_put(path, data)


def encrypt(*, key: str, plaintext: bytes) -> str:
    return get_backend().encrypt(key, plaintext)


def decrypt(*, key: str, ciphertext: str) -> bytes:
    return get_backend().decrypt(key, ciphertext)


def decrypt_refresh(*, key: str, ciphertext: str) -> tuple[bytes, str | None]:
    """Decrypt, and if the ciphertext is under an old key version also return it rewrapped under
    the newest one (store it: lazy re-encryption after a rotation); None when already current."""
    return get_backend().decrypt_refresh(key, ciphertext)


def rotate_key(*, key: str) -> int:
    return get_backend().rotate_key(key)


def key_version_latest(*, key: str) -> int:
    """The version new encryptions under `key` use; 0: no such key (never used, or shredded).
    ValueError for a malformed name, whichever backend."""
    check_key_name(key)
    return get_backend().key_version_latest(key)


def rewrap(*, key: str, ciphertext: str) -> str:
    return get_backend().rewrap(key, ciphertext)


def keyed_hash(*, key: str, data: bytes) -> str:
    return get_backend().keyed_hash(key, data)


def encrypt_and_hash(*, key: str, plaintext: bytes, hash_key: str, data: bytes) -> tuple[str, str]:
    """`encrypt(key=key, …)` and `keyed_hash(key=hash_key, …)` in one call (the local backend reads
    both data keys in one statement). Nothing is cached: a shredded key fails here at once."""
    return get_backend().encrypt_and_hash(key, plaintext, hash_key, data)


def key_delete_material(*, key: str) -> None:
    """Crypto-shred a key: everything it encrypted becomes unreadable for good."""
    get_backend().delete_key_material(key)
