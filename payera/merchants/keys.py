"""API key material: generation, parsing and hashing. Pure functions, no I/O.

A key is `sk_test_` + 43 base62 characters (~256 bits from `secrets`). The first 8 random
characters, with the `sk_test_` marker, form the visible prefix: it is not secret, it finds the
row and names the key in dashboards and logs. The whole key is stored only as its SHA-256
(docs/decisions/api-key-storage.md).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

KEY_MARKER = "sk_test_"
_ALPHABET = string.digits + string.ascii_letters
SECRET_LENGTH = 43  # 43 * log2(62) ~ 256 bits
PREFIX_RANDOM_CHARS = 8
_KEY_RE = re.compile(rf"^sk_test_[0-9A-Za-z]{{{SECRET_LENGTH}}}$")


def generate_key() -> str:
    return KEY_MARKER + "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))


def is_well_formed(raw: str) -> bool:
    return bool(_KEY_RE.match(raw))


def key_prefix(raw: str) -> str:
    """The visible, non-secret part of a key (also what auth failures are logged with)."""
    return raw[: len(KEY_MARKER) + PREFIX_RANDOM_CHARS]


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def hash_matches(raw: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(raw).encode(), stored_hash.encode())
