"""Webhook signatures: `Payera-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.

While a secret is being rolled both secrets sign, so the header carries two `v1=` values and a
merchant verifying with either secret succeeds.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

HEADER = "Payera-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str | Sequence[str], timestamp: int, body: bytes) -> str:
    """The header value for `body` signed at `timestamp` by one secret or several (a roll)."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    parts = [f"t={int(timestamp)}"] + [f"{SCHEME}={_digest(s, int(timestamp), body)}" for s in secrets]
    return ",".join(parts)


def verify(
    secret: str, header: str, body: bytes, *, tolerance: int = DEFAULT_TOLERANCE_SECONDS, now: float | None = None
) -> bool:
    """The receiving side (what docs/webhooks.md shows merchants), used by tests and tooling."""
    timestamp, signatures = None, []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():  # "²".isdigit() is True, int("²") raises
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = _digest(secret, timestamp, body)
    # bytes: compare_digest raises TypeError on a str with a non-ASCII character
    return any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures)
