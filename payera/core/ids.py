"""Public object ids: a type prefix and 24 random base62 characters (~143 bits).

Random, not sequential: ids leak neither volume nor order. `IdField` is a primary key that
generates one on creation, e.g. `id = IdField(prefix="pay")` gives `pay_3kTMd...`.
"""

from __future__ import annotations

import functools
import os
import string

from django.db import models

_ALPHABET = string.digits + string.ascii_letters
_LENGTH = 24


# Random bytes below 248 (4 x 62) map uniformly onto the alphabet; the 8 values above are dropped
# (rejection sampling: no modulo bias). One `translate` instead of 24 `secrets.choice` calls.
_TABLE = bytes(ord(_ALPHABET[i % len(_ALPHABET)]) for i in range(256))
_REJECT = bytes(range(4 * len(_ALPHABET), 256))


def new_id(prefix: str) -> str:
    chars = b""
    while len(chars) < _LENGTH:  # 32 bytes hold 24 accepted ones but about once in 2.4 million
        chars += os.urandom(32).translate(_TABLE, _REJECT)
    return f"{prefix}_" + chars[:_LENGTH].decode()


def has_prefix(value: object, prefix: str) -> bool:
    return isinstance(value, str) and value.startswith(prefix + "_") and len(value) <= len(prefix) + 1 + 64


# --- Opaque ids for rows keyed by a sequence (ledger entries: `txn_`) ---------------------------
# A row that the ledger writes millions of times keeps its bigint key (no random id to generate,
# store and index on the posting path); the API shows it as the prefix and 24 base62 characters of
# one AES block: 8 zero bytes and the 8-byte key, encrypted under a key derived from the secrets
# backend. A permutation: every row has one id, no two rows share one, and without the key the ids
# tell neither volume nor order; an id that does not decrypt to 8 zero bytes first is no row's
# (a guess succeeds once in 2^64).
_OPAQUE_KEY = "public-ids"


@functools.lru_cache(maxsize=8)
def _opaque_cipher(prefix: str):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from payera.secrets.services import keyed_hash

    # stable for the key's lifetime (keyed_hash uses the key's first version), one per prefix
    key = bytes.fromhex(keyed_hash(key=_OPAQUE_KEY, data=f"opaque-id:{prefix}".encode()))[:16]
    return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305 - one block: a keyed permutation, no pattern to leak


def _base62(n: int) -> str:
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)).rjust(_LENGTH, "0")  # 2^128 < 62^22: always fits


def opaque_id(prefix: str, key: int) -> str:
    """The public id of row `key` (0 <= key < 2^63): `prefix_` and 24 base62 characters."""
    enc = _opaque_cipher(prefix).encryptor()
    block = enc.update(bytes(8) + int(key).to_bytes(8, "big")) + enc.finalize()
    return f"{prefix}_" + _base62(int.from_bytes(block, "big"))


def opaque_id_key(prefix: str, value: object) -> int | None:
    """The row key of an opaque id, or None when `value` is no id of `prefix` (any other text)."""
    if not isinstance(value, str) or not value.startswith(prefix + "_"):
        return None
    text = value[len(prefix) + 1 :]
    if len(text) != _LENGTH or not text.isascii() or not text.isalnum():
        return None
    n = 0
    for ch in text:
        n = n * 62 + _ALPHABET.index(ch)
    if n >= 1 << 128:
        return None
    dec = _opaque_cipher(prefix).decryptor()
    block = dec.update(n.to_bytes(16, "big")) + dec.finalize()
    if block[:8] != bytes(8):
        return None
    return int.from_bytes(block[8:], "big")


class IdField(models.CharField):
    def __init__(self, *args, prefix: str, **kwargs):
        self.prefix = prefix
        kwargs.setdefault("max_length", len(prefix) + 1 + _LENGTH + 8)
        kwargs.setdefault("primary_key", True)
        kwargs.setdefault("editable", False)
        kwargs["default"] = IdDefault(prefix)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["prefix"] = self.prefix
        kwargs.pop("default", None)
        return name, path, args, kwargs


class IdDefault:
    """A picklable, migration-serializable callable default."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self) -> str:
        return new_id(self.prefix)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdDefault) and other.prefix == self.prefix

    def __hash__(self) -> int:
        return hash(self.prefix)

    def deconstruct(self):
        return ("payera.core.ids.IdDefault", (self.prefix,), {})
