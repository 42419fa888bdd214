"""Public object ids: a type prefix and 24 random base62 characters (~143 bits).

Random, not sequential: ids leak neither volume nor order. `IdField` is a primary key that
generates one on creation, e.g. `id = IdField(prefix="pay")` gives `pay_3kTMd...`.
"""

from __future__ import annotations

import secrets
import string

from django.db import models

_ALPHABET = string.digits + string.ascii_letters
_LENGTH = 24


def new_id(prefix: str) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))


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
