"""A stand-in for the alpha PSP (its wire format, psp_adapters/sandbox/alpha.py) for the answers the
alpha sandbox never gives: an authorization left uncaptured for an automatic payment, a capture
refused for a moment, a capture answered pending and refused later, a capture or refund carried out
after the adapter's read timeout and listed only from then on. A PSP is outside the machine: use it
with `tests.helpers.standin_psp` and `psp_at`, or `authorized_at_standin`; `alpha_webhook` tells Payera
what it did, as its webhook."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import threading
import time

SLOW_SECONDS = 2.5  # past the adapter's 1.5 s read timeout (tests/psp_adapters/sandbox_fixtures.py)


class StandinAlpha:
    """`capture_at_authorization`: the authorization answers captured. `capture`: how a capture is
    answered — "succeed", "pending_then_failed" (answered pending, listed failed) or "slow" (answered
    after SLOW_SECONDS, listed once `carry_out()` is called); `refuse_captures`: the first n captures
    are answered 503 first (nothing processed). `refund`: "succeed" or "slow" (as a slow capture).
    `currency_case`: "lower" answers the currency as `eur` (what a PSP may send; ISO 4217 codes are
    case-insensitive). `void`: "succeed" or "pending_then_failed" (answered pending, listed failed:
    the authorization stays authorized); `voids`: how each new void reference is answered, in turn
    ("refuse": answered and listed failed; "pending_then_failed"; "pending": answered and listed
    pending until `void_carry_out()`), then `void` for the rest. A void reference seen before is
    answered with its first operation (as the PSP's idempotency does); `void_references` lists the
    reference of every void request. `psp_capture(reference, amount)`: the PSP captures an
    authorization on its own (no request of ours), listed as a capture under the PSP's own id (a void
    still pending is refused by it). `inquiries_unavailable`: while True, every inquiry (GET) is
    answered 503 (the PSP cannot be asked; nothing else changes). A void mode "unavailable": answered
    503 (not processed) and not listed. `void_carry_out_late(reference)`: the PSP carries out after all
    a void it listed refused or answered 503 (listed succeeded, the authorization voided)."""

    def __init__(
        self,
        *,
        capture_at_authorization: bool = False,
        capture: str = "succeed",
        refuse_captures: int = 0,
        refund: str = "succeed",
        currency_case: str = "upper",
        void: str = "succeed",
        voids: tuple[str, ...] = (),
    ) -> None:
        self.currency_case = currency_case
        self.void_mode = void
        self.void_modes = list(voids)
        self.void_references: list[str] = []
        self.inquiries_unavailable = False
        self.voids_unanswered: dict[str, dict] = {}  # reference -> the void answered 503, not listed
        self.capture_at_authorization = capture_at_authorization
        self.capture_mode = capture
        self.refuse_captures = refuse_captures
        self.refund_mode = refund
        self.auths: dict[str, dict] = {}
        self.captures = 0  # capture requests received
        self.queued: list[tuple[dict, dict]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def carry_out(self) -> None:
        """The slow operations are done now: listed, and the authorization follows them."""
        with self._lock:
            for auth, op in self.queued:
                self._done(auth, op)
            self.queued.clear()

    def void_carry_out(self) -> None:
        """The voids listed pending are done now: the authorizations they void are voided."""
        with self._lock:
            for auth in self.auths.values():
                for op in auth["operations"]:
                    if op["type"] == "void" and op["status"] == "pending":
                        op["status"] = "succeeded"
                        auth["status"] = "voided"

    def void_carry_out_late(self, reference: str) -> dict:
        """The void `reference`, listed refused or answered 503, is carried out after all (a PSP that
        reported the refusal, or "not processed", and then voided): listed succeeded, the
        authorization voided. Returns the operation."""
        with self._lock:
            if reference in self.voids_unanswered:
                op = self.voids_unanswered.pop(reference)
                self.auths[op["authorization_id"]]["operations"].append(op)
                self.auths[op["authorization_id"]]["status"] = "voided"
                return dict(op)
            for auth in self.auths.values():
                for op in auth["operations"]:
                    if op["type"] == "void" and op["merchant_reference"] == reference and op["status"] == "failed":
                        op.update(status="succeeded", response_code=None, response_message=None)
                        auth["status"] = "voided"
                        return dict(op)
        raise AssertionError(f"no refused void {reference}")

    def psp_capture(self, reference: str, amount: int | None = None) -> dict:
        """The PSP captured the authorization of our `reference` on its own: its operation carries
        the PSP's own reference (none of ours). Returns the authorization as the PSP now lists it."""
        with self._lock:
            [auth] = [a for a in self.auths.values() if a["merchant_reference"] == reference]
            for op in auth["operations"]:  # a void still pending can no longer void it: refused
                if op["type"] == "void" and op["status"] == "pending":
                    op.update(status="failed", response_code="05", response_message="Refused")
            body = {"merchant_reference": f"psp_{next(self._ids)}", "amount": amount or auth["amount"]}
            self._done(auth, self._operation(auth, "capture", body, "succeeded"))
            return auth

    def _currency(self, code: str) -> str:
        return code.lower() if self.currency_case == "lower" else code

    @staticmethod
    def _done(auth: dict, op: dict) -> None:
        auth["operations"].append(op)
        if op["type"] == "capture":
            auth.update(status="captured", amount_captured=op["amount"])
        else:
            auth["amount_refunded"] += op["amount"]

    def _operation(self, auth: dict, kind: str, body: dict, status: str) -> dict:
        return {
            "object": "operation",
            "id": f"op_{next(self._ids)}",
            "type": kind,
            "authorization_id": auth["id"],
            "authorization_reference": auth["merchant_reference"],
            "merchant_reference": body["merchant_reference"],
            "amount": body["amount"],
            "currency": self._currency(auth["currency"]),
            "status": status,
            "response_code": None,
            "response_message": None,
            "created": "2026-01-01T00:00:00Z",
        }

    def _authorize(self, body: dict) -> dict:
        captured = self.capture_at_authorization
        auth = {
            "object": "authorization",
            "id": f"auth_X{next(self._ids)}",
            "merchant_reference": body["merchant_reference"],
            "status": "captured" if captured else "authorized",
            "amount": body["amount"],
            "currency": self._currency(body["currency"]),
            "amount_captured": body["amount"] if captured else 0,
            "amount_refunded": 0,
            "response_code": None,
            "response_message": None,
            "challenge": None,
            "card": {"last4": "4242"},
            "network_transaction_id": None,
            "card_token": None,
            "operations": [],
            "created": "2026-01-01T00:00:00Z",
        }
        self.auths[auth["id"]] = auth
        return auth

    def __call__(self, method: str, path: str, body: dict | None):
        slow = None
        with self._lock:
            if method == "POST" and path == "/v1/authorizations":
                return 201, self._authorize(body)
            if method == "GET" and self.inquiries_unavailable:
                return 503, {"error": {"code": "unavailable", "message": "Try again later."}}
            parts = path.split("?")[0].split("/")
            auth = self.auths.get(parts[3]) if len(parts) > 3 else None
            if auth is None:
                return 404, {"error": {"code": "not_found", "message": "No such authorization."}}
            if method == "GET":
                return 200, auth
            kind = {"capture": "capture", "refunds": "refund", "void": "void"}.get(parts[4] if len(parts) > 4 else "")
            if kind is None:
                return 400, {"error": {"code": "unsupported", "message": path}}
            if kind == "void":
                self.void_references.append(body["merchant_reference"])
            done = [o for o in auth["operations"] if o["merchant_reference"] == body["merchant_reference"]]
            if done:  # the same merchant reference again: the operation made
                return 200, done[0]
            if kind == "void":
                if auth["status"] != "authorized":
                    return 409, {"error": {"code": "invalid_state", "message": f"Cannot void {auth['status']}."}}
                mode = self.void_modes.pop(0) if self.void_modes else self.void_mode
                if mode == "unavailable":
                    op = self._operation(auth, kind, {**body, "amount": auth["amount"]}, "succeeded")
                    self.voids_unanswered[body["merchant_reference"]] = op
                    return 503, {"error": {"code": "unavailable", "message": "Try again later."}}
                if mode == "refuse":
                    op = {**self._operation(auth, kind, {**body, "amount": auth["amount"]}, "failed"),
                          "response_code": "05", "response_message": "Refused"}
                    auth["operations"].append(op)
                    return 201, op
                if mode == "pending":
                    op = self._operation(auth, kind, {**body, "amount": auth["amount"]}, "pending")
                    auth["operations"].append(op)
                    return 201, dict(op)
                if mode == "pending_then_failed":
                    op = self._operation(auth, kind, {**body, "amount": auth["amount"]}, "pending")
                    auth["operations"].append(
                        {**op, "status": "failed", "response_code": "05", "response_message": "Refused"}
                    )
                    return 201, op
                op = self._operation(auth, kind, {**body, "amount": auth["amount"]}, "succeeded")
                auth["operations"].append(op)
                auth["status"] = "voided"
                return 201, op
            mode = self.refund_mode if kind == "refund" else self.capture_mode
            if kind == "capture" and auth["status"] != "authorized":
                return 409, {"error": {"code": "invalid_state", "message": f"Cannot capture {auth['status']}."}}
            if kind == "capture":
                self.captures += 1
                if self.captures <= self.refuse_captures:
                    return 503, {"error": {"code": "unavailable", "message": "Try again later."}}
            if mode == "pending_then_failed":
                op = self._operation(auth, kind, body, "pending")
                auth["operations"].append(
                    {**op, "status": "failed", "response_code": "05", "response_message": "Refused"}
                )
                return 201, op
            op = self._operation(auth, kind, body, "succeeded")
            if mode == "slow":
                self.queued.append((auth, op))
                slow = op
            else:
                self._done(auth, op)
                return 201, op
        time.sleep(SLOW_SECONDS)  # outside the lock: the inquiries are answered meanwhile
        return 201, slow


@contextlib.contextmanager
def authorized_at_standin(settings, **modes):
    """A merchant paying through alpha, alpha being a `StandinAlpha(**modes)` on a loopback port for
    the with-block (pytest-django's `settings` restores the connector), and a card payment of theirs
    authorized there for a manual capture (`tests.helpers.authorized_payment`). Yields
    `(merchant, psp, payment)`."""
    from tests.helpers import authorized_payment, psp_at, standin_psp
    from tests.merchants.factories import MerchantFactory

    merchant = MerchantFactory(connectors=["alpha"])
    psp = StandinAlpha(**modes)
    with standin_psp(psp) as (url, _):
        psp_at(settings, "alpha", url)
        yield merchant, psp, authorized_payment(merchant)


def alpha_webhook(secret: str, event_id: str, kind: str, data: dict):
    """Alpha's webhook `kind` (e.g. "void.failed") about `data`, signed with `secret` and received into
    Payera's inbox (not processed yet): the `PspWebhook` row."""
    from payments.services.webhooks import psp_webhook_receive

    body = json.dumps({"id": event_id, "type": kind, "created": "2026-12-07T10:00:00Z", "data": data}).encode()
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return psp_webhook_receive(connector="alpha", body=body, headers={"X-Alpha-Signature": sig})


def alpha_void_webhook(secret: str, event_id: str, op: dict):
    """Alpha's webhook about its void operation `op`, as `op` says it ended ("void.failed", …)."""
    return alpha_webhook(secret, event_id, f"void.{op['status']}", op)
