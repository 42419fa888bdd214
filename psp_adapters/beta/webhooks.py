"""Beta's webhooks: `Beta-Signature: ts=<unix seconds>,sig=<hex HMAC-SHA256(secret, "<ts>.<raw body>")>`.

The timestamp is signed, so a body older than the tolerance (default 300 s) is refused:
replays of captured webhooks fail. Several `sig=` values are allowed (secret roll)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from psp_adapters.errors import WebhookPayloadError, WebhookSignatureError

SIGNATURE_HEADER = "beta-signature"


def sign(body: bytes, secret: str, ts: int | None = None) -> str:
    ts = int(time.time()) if ts is None else ts
    sig = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"ts={ts},sig={sig}"


def verify(
    *, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], tolerance: int = 300, now: float | None = None
) -> None:
    header = headers.get(SIGNATURE_HEADER, "")
    ts: str | None = None
    sigs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "ts":
            ts = value
        elif key == "sig":
            sigs.append(value.lower())
    if not ts or not (ts.isascii() and ts.isdigit()) or not sigs:  # "²".isdigit() is True, int("²") raises
        raise WebhookSignatureError("missing or malformed Beta-Signature", connector="beta")
    if abs((time.time() if now is None else now) - int(ts)) > tolerance:
        raise WebhookSignatureError("Beta-Signature timestamp outside the tolerance", connector="beta")
    for secret in secrets:
        expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        # as bytes: `compare_digest` raises TypeError on a str with a non-ASCII character
        if any(hmac.compare_digest(expected.encode(), s.encode()) for s in sigs):
            return
    raise WebhookSignatureError("Beta-Signature does not match", connector="beta")


def load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise WebhookPayloadError("webhook body is not JSON", connector="beta") from None
    if not isinstance(data, dict) or not data.get("eventId") or not data.get("eventCode"):
        raise WebhookPayloadError("webhook body lacks eventId/eventCode", connector="beta")
    return data
