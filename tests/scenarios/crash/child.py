"""Crash harness child (test-only): run one payment operation through the real services against
the sandbox PSPs and SIGKILL this very process at a named crash point.

    python -m tests.scenarios.crash.child '<json config>'

Config: database_url, connectors (settings.PSP_CONNECTORS), credentials ({psp: {api_key,
webhook_secret}}), op ("confirm" | "capture" | "refund" | "cancel" | "approve"), point ("before_psp" |
"after_psp", and for "approve" also "before_refund": the four-eyes decision committed, before the
refund is started; for "confirm" also "between_attempts": a soft decline recorded, before the
cascade's next attempt is committed — with `card`, e.g. alpha's soft-declined
4000000000000119), merchant_id, payment_id (capture/refund), amount (refund), approval_id and
user_id (approve: a second finance user approves a refund waiting for approval); for
"booking_cancel" / "booking_complete" (a confirmed booking's cancel, or its partial completion of
`amount`, each refunding out of escrow) booking_id, and also the point "after_refund": the escrow
refund recorded, before the booking's own transition (`_cancel_record` / `_complete_record`).

Production code is untouched: the crash is injected by wrapping the adapter that the service
module looked up (`get_adapter`), so "after_psp" dies right after the PSP's real answer came back
and before the service could store it; "before_psp" dies after the operation row was committed
and before the PSP call.
"""

from __future__ import annotations

import json
import os
import signal
import sys

CFG = json.loads(sys.argv[1])
os.environ["DATABASE_URL"] = CFG["database_url"]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payera.settings.test")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

settings.PSP_CONNECTORS = CFG["connectors"]
settings.SECRETS_BACKEND = "memory"

from payera.secrets.services import secret_put  # noqa: E402
from psp_adapters.registry import adapters_reset, get_adapter  # noqa: E402

for psp, creds in CFG["credentials"].items():
    secret_put(f"psp/{psp}", creds)
adapters_reset()

METHOD = {"confirm": "authorize", "capture": "capture", "refund": "refund", "cancel": "void",
          "approve": "refund", "booking_cancel": "refund", "booking_complete": "refund"}[CFG["op"]]


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingAdapter:
    def __init__(self, real) -> None:
        self._real = real

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if name != METHOD:
            return attr

        def call(*args, **kwargs):
            if CFG["point"] not in ("before_psp", "after_psp"):  # the crash point is elsewhere
                return attr(*args, **kwargs)
            if CFG["point"] == "before_psp":
                die()
            result = attr(*args, **kwargs)
            print("psp answered:", getattr(result, "outcome", result), flush=True)
            die()
            return result

        return call


def crashing_get_adapter(name):
    return CrashingAdapter(get_adapter(name))


import payments.services.payments as payments_module  # noqa: E402
import payments.services.refunds as refunds_module  # noqa: E402

payments_module.get_adapter = crashing_get_adapter
refunds_module.get_adapter = crashing_get_adapter

from payera.merchants.models import Merchant  # noqa: E402
from payments.services import payment_cancel, payment_capture, payment_create, refund_create  # noqa: E402

merchant = Merchant.objects.get(pk=CFG["merchant_id"])
if CFG["op"] == "confirm":
    if CFG["point"] == "between_attempts":  # an attempt's soft decline is recorded, the next one not started
        payments_module.attempt_start = lambda **kwargs: die()
    payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data={
        "type": "card", "card": {"number": CFG.get("card") or "4242424242424242", "exp_month": 12,
                                 "exp_year": 2034, "cvc": "123"},
    })
elif CFG["op"] == "capture":
    payment_capture(merchant=merchant, payment_id=CFG["payment_id"])
elif CFG["op"] == "cancel":
    payment_cancel(merchant=merchant, payment_id=CFG["payment_id"])
elif CFG["op"] == "approve":
    from django.contrib.auth import get_user_model

    import payments.backoffice.services as staff_module

    if CFG["point"] == "before_refund":
        staff_module.refund_create = lambda **kwargs: die()
    staff_module.refund_approval_approve(user=get_user_model().objects.get(pk=CFG["user_id"]),
                                         approval_id=CFG["approval_id"])
elif CFG["op"] in ("booking_cancel", "booking_complete"):
    import payments.services.bookings as bookings_module

    if CFG["point"] == "after_refund":  # the refund out of escrow recorded, the booking not yet
        bookings_module._cancel_record = bookings_module._complete_record = lambda **kwargs: die()
    if CFG["op"] == "booking_cancel":
        bookings_module.booking_cancel(merchant=merchant, booking_id=CFG["booking_id"])
    else:
        bookings_module.booking_complete(merchant=merchant, booking_id=CFG["booking_id"], amount=CFG.get("amount"))
else:
    refund_create(merchant=merchant, payment_id=CFG["payment_id"], amount=CFG.get("amount"))
print("no crash point was reached", flush=True)
sys.exit(3)
