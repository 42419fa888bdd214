"""The secrets port: one small interface, a module per backend (as Django's cache/mail backends).

KV: named secrets (PSP credentials, peppers). Transit-style crypto: named keys with versions;
a ciphertext names the key version that made it, so a rotated key still decrypts old data and
`rewrap` moves it to the newest version. `keyed_hash` is an HMAC under a named key, for values
that must be comparable but never reversible (card fingerprints) — never a plain hash of a PAN.

Every failure to reach, authenticate to or use the backend raises `SecretsUnavailableError`:
callers fail closed (503), they never fall back to storing in clear.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from payera.core.errors import ServiceUnavailableError


class SecretsUnavailableError(ServiceUnavailableError):
    code = "secrets_unavailable"
    default_message = "The secrets service is unavailable. Retry later."


class SecretNotFoundError(KeyError):
    pass


class SecretsBackend(ABC):
    @abstractmethod
    def secret_get(self, path: str) -> dict: ...

    @abstractmethod
    def secret_put(self, path: str, data: dict) -> None: ...

    @abstractmethod
    def encrypt(self, key_name: str, plaintext: bytes) -> str: ...

    @abstractmethod
    def decrypt(self, key_name: str, ciphertext: str) -> bytes: ...

    @abstractmethod
    def rotate_key(self, key_name: str) -> int:
        """Create a new key version; new encryptions use it. Returns the new version."""

    @abstractmethod
    def rewrap(self, key_name: str, ciphertext: str) -> str:
        """Re-encrypt under the newest key version without exposing the plaintext to callers."""

    @abstractmethod
    def keyed_hash(self, key_name: str, data: bytes) -> str:
        """Hex HMAC-SHA256 of data under the named key (stable across rotations of other keys)."""

    def delete_key_material(self, key_name: str) -> None:
        """Crypto-shred: destroy a key so what it encrypted can never be read again."""
        raise NotImplementedError
