"""Public functions of the secrets app; other apps import only these."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from payera.secrets.backends.base import SecretsBackend

BACKENDS = {
    "local": "payera.secrets.backends.local.LocalBackend",
    "vault": "payera.secrets.backends.vault.VaultBackend",
    "memory": "payera.secrets.backends.memory.MemoryBackend",
}


@lru_cache(maxsize=1)
def get_backend() -> SecretsBackend:
    name = settings.SECRETS_BACKEND
    return import_string(BACKENDS.get(name, name))()


def _clear(**kwargs) -> None:
    if kwargs.get("setting") in {"SECRETS_BACKEND", "VAULT_ADDR", "VAULT_TOKEN"}:
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


def rotate_key(*, key: str) -> int:
    return get_backend().rotate_key(key)


def rewrap(*, key: str, ciphertext: str) -> str:
    return get_backend().rewrap(key, ciphertext)


def keyed_hash(*, key: str, data: bytes) -> str:
    return get_backend().keyed_hash(key, data)
