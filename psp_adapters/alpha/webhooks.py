"""Alpha's webhooks: `X-Alpha-Signature: <hex HMAC-SHA256(webhook secret, raw body)>`.

Alpha signs no timestamp, so a replayed old body verifies: dedupe on the event `id` (Payera's
inbox is unique per connector and event id) makes a replay a no-op."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

from psp_adapters.errors import WebhookPayloadError, WebhookSignatureError

SIGNATURE_HEADER = "x-alpha-signature"


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(*, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    presented = headers.get(SIGNATURE_HEADER, "").strip().lower()
    if not presented:
        raise WebhookSignatureError("missing X-Alpha-Signature", connector="alpha")
    # as bytes: `compare_digest` raises TypeError on a str with a non-ASCII character (anyone can send one)
    if not any(hmac.compare_digest(presented.encode(), sign(body, s).encode()) for s in secrets):
        raise WebhookSignatureError("X-Alpha-Signature does not match", connector="alpha")


def load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise WebhookPayloadError("webhook body is not JSON", connector="alpha") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict) or not data.get("id"):
        raise WebhookPayloadError("webhook body lacks id/data", connector="alpha")
    return data


def parse_time(value: str | None) -> dt.datetime:
    if not value:
        return dt.datetime.now(dt.UTC)
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
