"""In-process backend for unit tests of other apps (Django's locmem idea). Not for deployment:
keys live only in this process's memory."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import os
import threading

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from payera.secrets.backends.base import SecretNotFoundError, SecretsBackend


class MemoryBackend(SecretsBackend):
    def __init__(self) -> None:
        self._kv: dict[str, dict] = {}
        self._keys: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()

    def _versions(self, key_name: str) -> list[bytes]:
        with self._lock:
            return self._keys.setdefault(key_name, [AESGCM.generate_key(bit_length=256)])

    def secret_get(self, path: str) -> dict:
        try:
            return copy.deepcopy(self._kv[path])
        except KeyError:
            raise SecretNotFoundError(path) from None

    def secret_put(self, path: str, data: dict) -> None:
        self._kv[path] = copy.deepcopy(data)

    def encrypt(self, key_name: str, plaintext: bytes) -> str:
        versions = self._versions(key_name)
        version = len(versions)
        nonce = os.urandom(12)
        ct = AESGCM(versions[-1]).encrypt(nonce, plaintext, key_name.encode())
        return f"mem:v{version}:" + base64.b64encode(nonce + ct).decode()

    def decrypt(self, key_name: str, ciphertext: str) -> bytes:
        _, version, blob = ciphertext.split(":", 2)
        raw = base64.b64decode(blob)
        key = self._versions(key_name)[int(version[1:]) - 1]
        return AESGCM(key).decrypt(raw[:12], raw[12:], key_name.encode())

    def rotate_key(self, key_name: str) -> int:
        versions = self._versions(key_name)
        versions.append(AESGCM.generate_key(bit_length=256))
        return len(versions)

    def rewrap(self, key_name: str, ciphertext: str) -> str:
        return self.encrypt(key_name, self.decrypt(key_name, ciphertext))

    def keyed_hash(self, key_name: str, data: bytes) -> str:
        return hmac.new(self._versions(key_name)[0], data, hashlib.sha256).hexdigest()

    def delete_key_material(self, key_name: str) -> None:
        self._keys.pop(key_name, None)
