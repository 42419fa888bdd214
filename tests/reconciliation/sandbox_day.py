"""A day of real sandbox payments and its settlement report, for the reconciliation tests."""

from __future__ import annotations

import datetime as dt
import json
import time
from io import StringIO

from django.core.management import call_command

from payments.models import Capture, PaymentAttempt, Refund
from payments.services import attempt_settlement_inquire, payment_create, recovery_run, refund_create
from psp_adapters.registry import get_adapter

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "737"}}


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def pay(merchant, amounts, *, refund: dict[int, int] | None = None):
    """Captured card payments (beta's are completed by inquiry: its webhooks go elsewhere here)."""
    paid = [payment_create(merchant=merchant, amount=a, currency="EUR", payment_method_data=CARD) for a in amounts]
    settle_pending()
    for i, amount in (refund or {}).items():
        refund_create(merchant=merchant, payment_id=paid[i].id, amount=amount)
    settle_pending()
    return paid


def settle_pending(timeout: float = 15.0) -> None:
    """Inquire until nothing is pending any more (beta completes asynchronously)."""
    deadline = time.monotonic() + timeout
    while (
        PaymentAttempt.objects.filter(status__in=["pending", "unknown", "started"]).exists()
        or Capture.objects.filter(status="pending").exists()
        or Refund.objects.filter(status="pending").exists()
    ):
        assert time.monotonic() < deadline, "sandbox payments did not complete"
        time.sleep(0.1)
        recovery_run(force=True)  # attempts; operations younger than the grace period are asked here:
        for model in (Capture, Refund):
            for attempt_id in model.objects.filter(status="pending").values_list("attempt_id", flat=True):
                attempt_settlement_inquire(attempt_id=attempt_id)


def report(psp: str) -> bytes:
    return get_adapter(psp).fetch_settlement_report(today())


def split_report(raw: bytes) -> tuple[bytes, bytes]:
    """A day's alpha report as the PSP's captures file and its refunds file (same header and
    trailer: two files of one period that share no line)."""
    header, *records, trailer = raw.rstrip(b"\n").split(b"\n")
    captures = [r for r in records if r.startswith(b"capture,")]
    refunds = [r for r in records if r.startswith(b"refund,")]
    assert len(captures) == 3 and len(refunds) == 1 and len(records) == 4, records
    return (b"\n".join([header, *captures, trailer]) + b"\n", b"\n".join([header, *refunds, trailer]) + b"\n")


def run_json(path, psp: str) -> dict:
    out = StringIO()
    call_command("reconcile", str(path), "--psp", psp, "--json", stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())
