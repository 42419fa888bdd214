"""In-process backend for unit tests of other apps (Django's locmem idea). Not for deployment:
keys live only in this process's memory."""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import os
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from payera.secrets.backends.base import (
    CiphertextInvalidError,
    KeyNotFoundError,
    SecretNotFoundError,
    SecretsBackend,
    check_key_name,
    check_secret_value,
)


class MemoryBackend(SecretsBackend):
    """All key material is reached through `_versions()`, the hook subclasses override (e.g. a
    test backend whose keys are deterministic so several processes share them)."""

    def __init__(self) -> None:
        self._kv: dict[str, dict] = {}
        self._keys: dict[str, list[bytes]] = {}
        self._shredded: set[str] = set()
        self._lock = threading.Lock()

    def _versions(self, key_name: str) -> list[bytes]:
        check_key_name(key_name)
        with self._lock:
            return self._keys.setdefault(key_name, [AESGCM.generate_key(bit_length=256)])

    def secret_get(self, path: str) -> dict:
        try:
            return copy.deepcopy(self._kv[path])
        except KeyError:
            raise SecretNotFoundError(path) from None

    def secret_put(self, path: str, data: dict) -> None:
        check_secret_value(data, path=path)
        self._kv[path] = copy.deepcopy(data)

    def encrypt(self, key_name: str, plaintext: bytes) -> str:
        versions = self._versions(key_name)
        version = len(versions)
        nonce = os.urandom(12)
        ct = AESGCM(versions[-1]).encrypt(nonce, bytes(plaintext), f"{key_name}:{version}".encode())
        return f"mem:v{version}:" + base64.b64encode(nonce + ct).decode()

    def decrypt(self, key_name: str, ciphertext: str) -> bytes:
        check_key_name(key_name)
        try:
            prefix, version_text, blob = ciphertext.split(":", 2)
            if prefix != "mem" or not version_text.startswith("v"):
                raise ValueError
            version = int(version_text[1:])
            raw = base64.b64decode(blob)
        except (ValueError, AttributeError, binascii.Error):
            raise CiphertextInvalidError() from None
        if key_name in self._shredded and key_name not in self._keys:
            raise KeyNotFoundError()
        versions = self._versions(key_name)
        if not 1 <= version <= len(versions):
            raise KeyNotFoundError()
        try:
            return AESGCM(versions[version - 1]).decrypt(raw[:12], raw[12:], f"{key_name}:{version}".encode())
        except InvalidTag:
            raise CiphertextInvalidError() from None

    def rotate_key(self, key_name: str) -> int:
        existed = key_name in self._keys
        versions = self._versions(key_name)  # rotating a missing key creates version 1
        if existed:
            with self._lock:
                versions.append(AESGCM.generate_key(bit_length=256))
        return len(versions)

    def rewrap(self, key_name: str, ciphertext: str) -> str:
        return self.encrypt(key_name, self.decrypt(key_name, ciphertext))

    def keyed_hash(self, key_name: str, data: bytes) -> str:
        return hmac.new(self._versions(key_name)[0], bytes(data), hashlib.sha256).hexdigest()

    def delete_key_material(self, key_name: str) -> None:
        with self._lock:
            self._keys.pop(key_name, None)
            self._shredded.add(key_name)

    def key_version_latest(self, key_name: str) -> int:
        return len(self._keys.get(key_name, []))
