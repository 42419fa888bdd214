from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from django.db import transaction

from payera.events.services import event_record

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def record(merchant_id: str, type: str = "payment.succeeded", data: dict | None = None):  # noqa: A002
    with transaction.atomic():
        return event_record(merchant_id=merchant_id, type=type, data=data or {"id": "pay_1", "object": "payment"})


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def docs_verifier() -> Callable[..., bool]:
    """exec the verification snippet exactly as docs/webhooks.md shows it to merchants."""
    text = DOCS.read_text()
    match = re.search(r"<!-- verify-snippet -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/webhooks.md lost its verification snippet"
    namespace: dict = {}
    exec(compile(match.group(1), str(DOCS), "exec"), namespace)  # noqa: S102 - our own docs
    return namespace["verify_payera_signature"]
