"""Public object ids: a type prefix and 24 random base62 characters (~143 bits).

Random, not sequential: ids leak neither volume nor order. `IdField` is a primary key that
generates one on creation, e.g. `id = IdField(prefix="pay")` gives `pay_3kTMd...`.
"""

from __future__ import annotations

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
