"""The secrets port: one small interface, a module per backend (as Django's cache/mail backends).

KV: named secrets (PSP credentials, peppers). Transit-style crypto: named keys with versions;
a ciphertext names the key version that made it, so a rotated key still decrypts old data and
`rewrap` moves it to the newest version. `keyed_hash` is an HMAC under a named key, for values
that must be comparable but never reversible (card fingerprints) — never a plain hash of a PAN.

Every failure to reach or authenticate to the backend raises `SecretsUnavailableError`: callers
fail closed (503), they never fall back to storing in clear. A request the backend refuses as
wrong (Vault 400/404/405/412: a bad path or value, a mount's or key's constraint) raises
`SecretsRequestError`; a KV value that is not JSON, `SecretValueInvalidError`. Their messages name
the operation (and the KV path), never the value, and never the backend's own text (which may
echo the request).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod

from payera.core.errors import PayeraError, ServiceUnavailableError

# Key names are path segments in Vault (transit/encrypt/<name>) and part of local ciphertexts.
KEY_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class SecretsUnavailableError(ServiceUnavailableError):
    code = "secrets_unavailable"
    default_message = "The secrets service is unavailable. Retry later."


class SecretNotFoundError(KeyError):
    pass


class SecretsRequestError(PayeraError):
    """The backend understood the request and refused it as wrong (a bad path or value, a
    mount's or key's constraint): not an outage, a retry will not help. The message says which
    operation and why in our words; never the value, never the backend's text."""

    code = "secrets_request_refused"
    default_message = "The secrets service refused the request."

    def __init__(self, operation: str = "", reason: str = "", *, path: str = "") -> None:
        if operation:
            where = f" for {path!r}" if path else ""
            message = f"The secrets service refused the {operation} request{where}: {reason or 'refused'}."
        else:
            message = None
        super().__init__(message)
        self.operation = operation


class SecretValueInvalidError(SecretsRequestError):
    code = "secret_value_invalid"


def check_secret_value(data: object, *, path: str = "") -> dict:
    """A KV secret is a JSON object (strings, numbers, booleans, null, lists, objects): anything
    else (bytes, NaN, a set...) is refused before it reaches a backend, without quoting it."""
    if not isinstance(data, dict):
        raise SecretValueInvalidError("kv_put", "a secret is a JSON object (a dict)", path=path)
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError):
        raise SecretValueInvalidError(
            "kv_put",
            "a secret's values must be JSON (strings, numbers, booleans, null, lists, objects)",
            path=path,
        ) from None
    return data


class CiphertextInvalidError(PayeraError):
    """A ciphertext that is malformed, tampered with, or made by another key. A data problem
    (500), not an outage: retrying will not help."""

    code = "ciphertext_invalid"
    default_message = "Stored encrypted data could not be decrypted."


class KeyNotFoundError(CiphertextInvalidError):
    """The key (or the key version) the ciphertext names does not exist, e.g. it was shredded."""

    code = "key_not_found"
    default_message = "The encryption key for this data does not exist."


def check_key_name(key_name: str) -> str:
    if not isinstance(key_name, str) or not KEY_NAME_RE.match(key_name):
        raise ValueError("key names are 1-63 characters of a-z, 0-9, '_' and '-'")
    return key_name


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

    def encrypt_and_hash(self, key_name: str, plaintext: bytes, hash_key_name: str, data: bytes) -> tuple[str, str]:
        """`encrypt(key_name, plaintext)` and `keyed_hash(hash_key_name, data)` together (a card's
        number and its fingerprint): a backend may fetch both keys at once."""
        return self.encrypt(key_name, plaintext), self.keyed_hash(hash_key_name, data)

    def delete_key_material(self, key_name: str) -> None:
        """Crypto-shred: destroy a key so what it encrypted can never be read again."""
        raise NotImplementedError

    # --- lazy re-encryption support (not abstract: derived from the methods above) ---------
    def key_version_latest(self, key_name: str) -> int:
        """The version new encryptions use (0 if the key does not exist yet)."""
        raise NotImplementedError

    def ciphertext_version(self, ciphertext: str) -> int:
        """The key version a ciphertext names (both formats end `...:v<version>:<payload>`)."""
        try:
            version = ciphertext.rsplit(":", 2)[-2]
            if not version.startswith("v"):
                raise ValueError
            return int(version[1:])
        except (ValueError, IndexError, AttributeError):
            raise CiphertextInvalidError() from None

    def decrypt_refresh(self, key_name: str, ciphertext: str) -> tuple[bytes, str | None]:
        """Decrypt; if the ciphertext is under an older key version, also return it rewrapped
        under the newest one so the caller can store it (lazy re-encryption), else None."""
        plaintext = self.decrypt(key_name, ciphertext)
        if self.ciphertext_version(ciphertext) < self.key_version_latest(key_name):
            return plaintext, self.rewrap(key_name, ciphertext)
        return plaintext, None
