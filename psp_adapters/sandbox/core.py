"""The sandbox PSP's business logic, shared by both wire formats.

A `Core` owns the store, decides outcomes from the card/IBAN tables, runs delayed jobs
(asynchronous outcomes, disputes, returns, refund failures) in a worker thread and delivers
webhooks with retries in another. Wire modules (`alpha.py`, `beta.py`) parse requests into
`AuthInput`, render rows in their own format and build and sign their webhook bodies.
Standard library plus `iso4217`, no Payera imports: the sandbox stands for a system outside Payera.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from psp_adapters.sandbox.cards import card_behaviour, iban_behaviour, iban_ok
from psp_adapters.sandbox.money import UnknownCurrencyError, currency_exponent, currency_normalize
from psp_adapters.sandbox.store import Store, new_id

if TYPE_CHECKING:
    from psp_adapters.sandbox.server import Response, Route

log = logging.getLogger("psp_adapters.sandbox")

Row = dict[str, Any]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook answered with a redirect is not delivered (urllib would re-send it as a GET)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class SandboxError(Exception):
    def __init__(self, status: int, code: str, message: str = "", param: str | None = None):
        super().__init__(message or code)
        self.status = status
        self.code = code
        self.message = message or code
        self.param = param


@dataclass
class Options:
    psp: str
    api_key: str
    webhook_secret: str
    webhook_url: str = ""
    public_url: str = ""
    hold_seconds: float = 30.0  # alpha's slow card: longer than any adapter read timeout
    processing_delay: float = 0.05  # beta: "received" -> outcome webhook
    dispute_delay: float = 2.0  # after capture of the dispute card
    refund_failure_delay: float = 0.5
    sepa_delay: float = 0.5  # SEPA debit settles
    return_delay: float = 2.0  # SEPA debit returned after it settled
    evidence_days: float = 7.0  # a dispute takes the merchant's evidence this long after it opened
    webhook_max_attempts: int = 12
    webhook_backoff: float = 0.5  # seconds, doubled per attempt, capped at 60
    # Chaos mode (off when empty; `PUT /_sandbox/config {"chaos": {...}}`, docs/sandbox.md):
    # error_rate (5xx before processing), timeout_rate + timeout_seconds (answer held past the
    # adapter's timeout after processing), duplicate_webhook_rate, late_webhook_seconds.
    chaos: dict[str, float] = field(default_factory=dict)


@dataclass
class AuthInput:
    reference: str
    amount: int
    currency: str
    method: str  # card | token | bank_redirect | sepa_debit
    card_number: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    token: str | None = None
    bank: str | None = None
    iban: str | None = None
    holder: str | None = None
    capture: bool = False
    off_session: bool = False
    network_transaction_id: str | None = None
    store_method: bool = False
    return_url: str | None = None
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        data = asdict(self)
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class Wire(Protocol):
    psp: str
    methods: frozenset[str]

    def event_body(self, core: Core, event_type: str, event_id: str, payment: Row, extra: Row | None) -> bytes: ...

    def sign(self, body: bytes, secret: str) -> dict[str, str]: ...

    def api_key_from(self, headers: Any) -> str: ...

    def error(self, err: SandboxError) -> Response: ...

    def routes(self) -> list[Route]: ...


def fixed_minor(cents_of_major: int, currency: str) -> int:
    """A fixed fee given in hundredths of the major unit, in the currency's minor unit."""
    scale: int = pow(10, currency_exponent(currency))
    return cents_of_major * scale // 100


# what `POST /_sandbox/payments/<id>/disputes` may open (tests): a card chargeback, a SEPA return
# (final: `lost` at once) or a SEPA unauthorised-transaction claim (`needs_response`: contestable)
DISPUTE_REASONS_OPENABLE = frozenset({"fraudulent", "debit_returned", "debit_unauthorized"})

FEES = {
    # psp: (capture per mille, capture fixed in 1/100 major, refund fixed, chargeback fixed)
    "alpha": (14, 25, 0, 1500),
    "beta": (19, 0, 10, 1000),
}


def fee_for(psp: str, kind: str, amount: int, currency: str) -> int:
    per_mille, cap_fixed, refund_fixed, cb_fixed = FEES[psp]
    if kind == "capture":
        return (amount * per_mille + 500) // 1000 + fixed_minor(cap_fixed, currency)
    if kind == "refund":
        return fixed_minor(refund_fixed, currency)
    if kind == "chargeback":
        return fixed_minor(cb_fixed, currency)
    return 0


class Core:
    def __init__(self, store: Store, options: Options, wire: Wire) -> None:
        self.store = store
        self.opts = options
        self.wire = wire
        self.psp = options.psp
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.asynchronous = self.psp == "beta"
        self.chaos_counts: dict[str, int] = {}
        self._duplicated: set[str] = set()

    def chaos(self, name: str) -> float:
        return float(self.opts.chaos.get(name, 0) or 0)

    def chaos_hit(self, name: str, rate: str) -> bool:
        """True with the configured probability `rate`; counts the hits under `name`."""
        hit = random.random() < self.chaos(rate)  # noqa: S311 (chaos, not crypto)
        if hit:
            self.chaos_counts[name] = self.chaos_counts.get(name, 0) + 1
        return hit

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        for target in (self._job_loop, self._webhook_loop):
            t = threading.Thread(target=target, daemon=True, name=f"{self.psp}-{target.__name__}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    # --- reads ------------------------------------------------------------------------
    def payment(self, payment_id: str) -> Row:
        row = self.store.one("SELECT * FROM payments WHERE id = ?", (payment_id,))
        if row is None:
            raise SandboxError(404, "not_found", "No such payment.")
        return row

    def payment_by_reference(self, reference: str) -> Row:
        row = self.store.one("SELECT * FROM payments WHERE reference = ?", (reference,))
        if row is None:
            raise SandboxError(404, "not_found", "No payment with this reference.")
        return row

    def operations(self, payment_id: str) -> list[Row]:
        return self.store.all("SELECT * FROM operations WHERE payment_id = ? ORDER BY created_at, id", (payment_id,))

    def operation(self, op_id: str) -> Row:
        row = self.store.one("SELECT * FROM operations WHERE id = ?", (op_id,))
        if row is None:
            raise SandboxError(404, "not_found", "No such operation.")
        return row

    def disputes(self, payment_id: str) -> list[Row]:
        return self.store.all("SELECT * FROM disputes WHERE payment_id = ? ORDER BY created_at", (payment_id,))

    def dispute(self, dispute_id: str) -> Row:
        """One dispute as stored (the dispute inquiry of the PSP's API); 404 for an unknown id."""
        row = self.store.one("SELECT * FROM disputes WHERE id = ?", (dispute_id,))
        if row is None:
            raise SandboxError(404, "not_found", "No such dispute.")
        return row

    def payment_by_action_token(self, token: str) -> Row:
        row = self.store.one("SELECT * FROM payments WHERE action_token = ?", (token,))
        if row is None:
            raise SandboxError(404, "not_found", "No such challenge.")
        return row

    def action_url(self, payment: Row) -> str | None:
        if payment["state"] != "requires_action" or not payment["action_token"]:
            return None
        page = "bank" if payment["method"] == "bank_redirect" else "challenge"
        return f"{self.opts.public_url}/{page}/{payment['action_token']}"

    # --- authorization ----------------------------------------------------------------
    def _validate(self, inp: AuthInput) -> None:
        if not isinstance(inp.reference, str) or not 1 <= len(inp.reference) <= 255:
            raise SandboxError(400, "invalid_reference", "A merchant reference (1-255 chars) is required.", "reference")
        if isinstance(inp.amount, bool) or not isinstance(inp.amount, int) or inp.amount <= 0:
            raise SandboxError(400, "invalid_amount", "The amount must be a positive integer.", "amount")
        try:
            inp.currency = currency_normalize(inp.currency)
        except UnknownCurrencyError:
            raise SandboxError(400, "invalid_currency", "Unknown currency.", "currency") from None
        if inp.method not in self.wire.methods:
            raise SandboxError(400, "payment_method_unsupported", f"{self.psp} does not support {inp.method}.")
        if inp.method == "card":
            if not inp.card_number or not inp.card_number.isdigit():
                raise SandboxError(400, "invalid_card", "A card number is required.", "card.number")
            if not isinstance(inp.exp_month, int) or not 1 <= inp.exp_month <= 12 or not isinstance(inp.exp_year, int):
                raise SandboxError(400, "invalid_expiry", "A valid expiry is required.", "card.expiry")
        elif inp.method == "token":
            tok = self.store.one("SELECT * FROM tokens WHERE token = ?", (inp.token or "",))
            if tok is None:
                raise SandboxError(400, "invalid_token", "Unknown stored payment method.", "token")
        if inp.method == "card" and inp.off_session and not inp.network_transaction_id:
            # Scheme rule: a merchant-initiated charge of a card the PSP holds no token for must
            # name the network transaction id of the customer-initiated one it follows.
            raise SandboxError(400, "network_transaction_id_required",
                               "A merchant-initiated card payment needs the network transaction id of the "
                               "initial customer-initiated payment.", "network_transaction_id")
        ntid = inp.network_transaction_id
        if ntid is not None and (not isinstance(ntid, str) or not 1 <= len(ntid) <= 64):
            raise SandboxError(400, "invalid_network_transaction_id", "Bad network transaction id.",
                               "network_transaction_id")
        elif inp.method == "sepa_debit":
            if not inp.iban or not iban_ok(inp.iban):
                raise SandboxError(400, "invalid_iban", "The IBAN fails its checksum.", "iban")
            if not inp.holder:
                raise SandboxError(400, "invalid_holder", "The account holder name is required.", "holder")
        elif inp.method == "bank_redirect" and inp.bank != "sandbox_bank":
            raise SandboxError(400, "unknown_bank", "Unknown bank; use sandbox_bank.", "bank")

    def authorize(self, inp: AuthInput) -> tuple[Row, bool, float]:
        """Returns (payment row, created, seconds to hold the answer)."""
        self._validate(inp)
        fingerprint = inp.fingerprint()
        with self.store.tx():
            existing = self.store.one("SELECT * FROM payments WHERE reference = ?", (inp.reference,))
            if existing is not None:
                if existing["request_hash"] != fingerprint:
                    raise SandboxError(
                        409, "idempotency_conflict", "This reference was used with different parameters."
                    )
                return existing, False, 0.0
            fail = inp.metadata.get(f"sandbox_fail_{self.psp}") or inp.metadata.get("sandbox_fail")
            if fail:
                # test hook: answer an error without recording anything (nothing was processed)
                status = int(fail) if fail.isdigit() and 400 <= int(fail) <= 599 else 503
                raise SandboxError(status, "sandbox_failure", f"Sandbox failure {fail} requested.")
            try:
                amount = inp.amount + int(inp.metadata.get("sandbox_amount_delta", "0"))
                currency = currency_normalize(inp.metadata.get("sandbox_currency", inp.currency))
            except (ValueError, UnknownCurrencyError):
                raise SandboxError(400, "invalid_metadata", "Bad sandbox test hook.") from None
            card_number, exp_month, exp_year = inp.card_number, inp.exp_month, inp.exp_year
            if inp.method == "token":
                tok = self.store.one("SELECT * FROM tokens WHERE token = ?", (inp.token,))
                assert tok is not None
                card_number, exp_month, exp_year = tok["card_number"], tok["exp_month"], tok["exp_year"]
            now = time.time()
            row: Row = {
                "id": new_id("auth_" if self.psp == "alpha" else "BP"),
                "reference": inp.reference,
                "request_hash": fingerprint,
                "method": "card" if inp.method == "token" else inp.method,
                "card_number": card_number,
                "card_last4": card_number[-4:] if card_number else None,
                "exp_month": exp_month,
                "exp_year": exp_year,
                "iban": inp.iban.replace(" ", "").upper() if inp.iban else None,
                "amount": amount,
                "currency": currency,
                "state": "received",
                "decline": None,
                "capture": int(inp.capture),
                "off_session": int(inp.off_session),
                "network_transaction_id": inp.network_transaction_id,
                "token": inp.token if inp.method == "token" else None,
                "store_method": int(inp.store_method),
                "return_url": inp.return_url,
                "action_token": None,
                "metadata": json.dumps(inp.metadata),
                "description": inp.description or "",
                "created_at": now,
                "updated_at": now,
            }
            self.store.insert("payments", row)
            hold = 0.0
            if row["method"] == "card":
                b = card_behaviour(self.psp, card_number or "")
                if b.three_ds and not self._expired(exp_month, exp_year):
                    if inp.off_session:
                        self._decide_card(row, decline="authentication_required")
                    else:
                        self._set(row, state="requires_action", action_token=new_id("", 24))
                elif self.asynchronous:
                    self.store.job_add("process_payment", {"payment": row["id"]}, self.opts.processing_delay)
                else:
                    self._decide_card(row)
                    if b.slow:
                        hold = self.opts.hold_seconds
            elif row["method"] == "bank_redirect":
                self._set(row, state="requires_action", action_token=new_id("", 24))
            elif row["method"] == "sepa_debit":
                self.store.job_add("process_payment", {"payment": row["id"]}, self.opts.sepa_delay)
        return self.payment(row["id"]), True, hold

    @staticmethod
    def _expired(exp_month: int | None, exp_year: int | None) -> bool:
        today = dt.datetime.now(dt.UTC).date()
        return (exp_year or 0, exp_month or 0) < (today.year, today.month)

    def _set(self, row: Row, **values: Any) -> None:
        values["updated_at"] = time.time()
        self.store.update("payments", row["id"], values)
        row.update(values)

    def _decide_card(self, row: Row, *, decline: str | None = None) -> None:
        """Settle a card authorization from the card's row (inside a store transaction)."""
        b = card_behaviour(self.psp, row["card_number"] or "")
        if decline is None:
            if self._expired(row["exp_month"], row["exp_year"]):
                decline = "expired_card"
            elif b.decline:
                decline = b.decline
            elif row["off_session"] and b.off_session_decline:
                decline = b.off_session_decline
        if decline:
            self._set(row, state="declined", decline=decline)
            return
        values: dict[str, Any] = {"state": "authorized", "decline": None}
        if not row["network_transaction_id"]:
            values["network_transaction_id"] = "NTID" + new_id("", 15)
        if row["store_method"] and not row["token"]:
            token = new_id("tok_" if self.psp == "alpha" else "BSPM", 20)
            self.store.insert(
                "tokens",
                {
                    "token": token,
                    "card_number": row["card_number"],
                    "exp_month": row["exp_month"],
                    "exp_year": row["exp_year"],
                    "created_at": time.time(),
                },
            )
            values["token"] = token
        self._set(row, **values)
        if row["capture"]:
            self._capture_now(row, reference=row["reference"], amount=row["amount"])

    def _capture_now(self, row: Row, *, reference: str, amount: int, op: Row | None = None) -> Row:
        now = time.time()
        fee = fee_for(self.psp, "capture", amount, row["currency"])
        if op is None:
            op = {
                "id": new_id("op_" if self.psp == "alpha" else "BM"),
                "payment_id": row["id"],
                "kind": "capture",
                "reference": reference,
                "amount": amount,
                "currency": row["currency"],
                "state": "succeeded",
                "fee": fee,
                "decline": None,
                "created_at": now,
                "completed_at": now,
            }
            self.store.insert("operations", op)
        else:
            self.store.update("operations", op["id"], {"state": "succeeded", "fee": fee, "completed_at": now})
            op.update(state="succeeded", fee=fee, completed_at=now)
        self._set(row, state="captured", amount_captured=amount)
        if row["method"] == "card" and card_behaviour(self.psp, row["card_number"] or "").dispute_after_capture:
            self.store.job_add("dispute", {"payment": row["id"], "reason": "fraudulent"}, self.opts.dispute_delay)
        return op

    def complete_challenge(self, token: str, result: str) -> Row:
        if result not in ("pass", "fail"):
            raise SandboxError(400, "invalid_result", "result must be pass or fail.", "result")
        with self.store.tx():
            row = self.payment_by_action_token(token)
            if row["state"] != "requires_action":
                return row  # already completed: the form was submitted twice
            if result == "fail":
                self._set(row, state="declined", decline="authentication_failed")
            elif row["method"] == "bank_redirect":
                self._set(row, state="authorized")
                self._capture_now(row, reference=row["reference"], amount=row["amount"])
            else:
                self._decide_card(row)
            self.emit("authorization", row)
        return self.payment(row["id"])

    # --- operations -------------------------------------------------------------------
    def _existing_op(self, payment_id: str, kind: str, reference: str) -> Row | None:
        return self.store.one(
            "SELECT * FROM operations WHERE payment_id = ? AND kind = ? AND reference = ?",
            (payment_id, kind, reference),
        )

    def _check_op_input(self, row: Row, reference: str, amount: Any, currency: str | None) -> None:
        if not isinstance(reference, str) or not 1 <= len(reference) <= 255:
            raise SandboxError(400, "invalid_reference", "A merchant reference is required.", "reference")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise SandboxError(400, "invalid_amount", "The amount must be a positive integer.", "amount")
        if currency is not None and currency.upper() != row["currency"]:
            raise SandboxError(400, "currency_mismatch", "Currency differs from the authorization.", "currency")

    def _new_op(self, row: Row, kind: str, reference: str, amount: int, state: str) -> Row:
        now = time.time()
        op = {
            "id": new_id("op_" if self.psp == "alpha" else "BM"),
            "payment_id": row["id"],
            "kind": kind,
            "reference": reference,
            "amount": amount,
            "currency": row["currency"],
            "state": state,
            "fee": 0,
            "decline": None,
            "created_at": now,
            "completed_at": None,
        }
        self.store.insert("operations", op)
        return op

    def _pending(self, row: Row, kind: str | None = None) -> list[Row]:
        ops = [o for o in self.operations(row["id"]) if o["state"] in ("received", "pending")]
        return [o for o in ops if kind is None or o["kind"] == kind]

    def capture(self, payment_id: str, *, reference: str, amount: Any, currency: str | None) -> tuple[Row, bool]:
        with self.store.tx():
            row = self.payment(payment_id)
            if (op := self._existing_op(row["id"], "capture", reference)) is not None:
                return op, False
            if amount is None:
                amount = row["amount"]
            self._check_op_input(row, reference, amount, currency)
            if row["state"] != "authorized" or self._pending(row, "capture") or self._pending(row, "void"):
                raise SandboxError(409, "invalid_state", f"Cannot capture a payment that is {row['state']}.")
            if amount > row["amount"]:
                raise SandboxError(400, "amount_too_large", "Capture exceeds the authorized amount.", "amount")
            if self.asynchronous:
                op = self._new_op(row, "capture", reference, amount, "received")
                self.store.job_add("process_operation", {"operation": op["id"]}, self.opts.processing_delay)
                return op, True
            return self._capture_now(row, reference=reference, amount=amount), True

    def void(self, payment_id: str, *, reference: str) -> tuple[Row, bool]:
        with self.store.tx():
            row = self.payment(payment_id)
            if (op := self._existing_op(row["id"], "void", reference)) is not None:
                return op, False
            self._check_op_input(row, reference, row["amount"], None)
            if row["state"] == "requires_action":
                # The shopper has not finished 3-D Secure or the bank page: the void abandons it
                # at once (the challenge can no longer be completed), on either sandbox.
                op = self._new_op(row, "void", reference, row["amount"], "succeeded")
                self.store.update("operations", op["id"], {"completed_at": time.time()})
                self._set(row, state="voided")
                return self.operation(op["id"]), True
            if row["state"] != "authorized" or self._pending(row, "capture"):
                raise SandboxError(409, "invalid_state", f"Cannot void a payment that is {row['state']}.")
            if self.asynchronous:
                op = self._new_op(row, "void", reference, row["amount"], "received")
                self.store.job_add("process_operation", {"operation": op["id"]}, self.opts.processing_delay)
                return op, True
            op = self._new_op(row, "void", reference, row["amount"], "succeeded")
            self.store.update("operations", op["id"], {"completed_at": time.time()})
            self._set(row, state="voided")
            return self.operation(op["id"]), True

    def refund(self, payment_id: str, *, reference: str, amount: Any, currency: str | None) -> tuple[Row, bool]:
        with self.store.tx():
            row = self.payment(payment_id)
            if (op := self._existing_op(row["id"], "refund", reference)) is not None:
                return op, False
            if amount is None:
                amount = row["amount_captured"] - row["amount_refunded"]
            self._check_op_input(row, reference, amount, currency)
            if row["state"] != "captured":
                raise SandboxError(409, "invalid_state", f"Cannot refund a payment that is {row['state']}.")
            pending = sum(o["amount"] for o in self._pending(row, "refund"))
            if amount > row["amount_captured"] - row["amount_refunded"] - pending:
                raise SandboxError(400, "amount_too_large", "Refund exceeds what is left to refund.", "amount")
            fails = row["method"] == "card" and card_behaviour(self.psp, row["card_number"] or "").refund_fails
            if self.asynchronous:
                op = self._new_op(row, "refund", reference, amount, "received")
                self.store.job_add("process_operation", {"operation": op["id"]}, self.opts.processing_delay)
                return op, True
            if fails:
                op = self._new_op(row, "refund", reference, amount, "pending")
                self.store.job_add("process_operation", {"operation": op["id"]}, self.opts.refund_failure_delay)
                return op, True
            op = self._new_op(row, "refund", reference, amount, "received")
            self._apply_operation(op)
            return self.operation(op["id"]), True

    def _apply_operation(self, op: Row) -> None:
        """Settle a received/pending operation (inside a store transaction)."""
        row = self.payment(op["payment_id"])
        now = time.time()
        if op["kind"] == "capture":
            self._capture_now(row, reference=op["reference"], amount=op["amount"], op=op)
        elif op["kind"] == "void":
            self.store.update("operations", op["id"], {"state": "succeeded", "completed_at": now})
            self._set(row, state="voided")
        elif op["kind"] == "refund":
            if card_behaviour(self.psp, row["card_number"] or "").refund_fails and row["method"] == "card":
                self.store.update(
                    "operations", op["id"], {"state": "failed", "decline": "refund_rejected", "completed_at": now}
                )
            else:
                fee = fee_for(self.psp, "refund", op["amount"], op["currency"])
                self.store.update("operations", op["id"], {"state": "succeeded", "fee": fee, "completed_at": now})
                self._set(row, amount_refunded=row["amount_refunded"] + op["amount"])

    # --- jobs -------------------------------------------------------------------------
    def run_job(self, kind: str, payload: dict[str, Any]) -> None:
        with self.store.tx():
            if kind == "process_payment":
                row = self.payment(payload["payment"])
                if row["state"] != "received":
                    return
                if row["method"] == "sepa_debit":
                    b = iban_behaviour(row["iban"] or "")
                    if b.decline:
                        self._set(row, state="declined", decline=b.decline)
                    else:
                        self._set(row, state="authorized")
                        self._capture_now(row, reference=row["reference"], amount=row["amount"])
                        if b.returned:
                            self.store.job_add(
                                "dispute", {"payment": row["id"], "reason": "debit_returned"}, self.opts.return_delay
                            )
                else:
                    self._decide_card(row)
                self.emit("authorization", row)
            elif kind == "process_operation":
                op = self.operation(payload["operation"])
                if op["state"] not in ("received", "pending"):
                    return
                self._apply_operation(op)
                op = self.operation(op["id"])
                if self.asynchronous or op["state"] == "failed" or op["kind"] == "refund":
                    self.emit(op["kind"], self.payment(op["payment_id"]), op)
            elif kind == "dispute":
                row = self.payment(payload["payment"])
                if row["state"] != "captured" or self.disputes(row["id"]):
                    return
                self._dispute_new(row, payload["reason"])

    def _dispute_new(self, row: Row, reason: str) -> Row:
        """Open a dispute on a captured payment and send its webhook (inside a store transaction).
        A returned debit (`debit_returned`, a SEPA R-transaction) is final: it opens `lost`, with
        nothing to answer; any other (a chargeback, a SEPA unauthorised-transaction claim
        `debit_unauthorized`) opens `needs_response`, taking evidence for `--evidence-days`."""
        dispute = {
            "id": new_id("dp_" if self.psp == "alpha" else "BD"),
            "payment_id": row["id"],
            "reason": reason,
            "amount": row["amount_captured"],
            "currency": row["currency"],
            "status": "needs_response" if reason != "debit_returned" else "lost",
            "fee": fee_for(self.psp, "chargeback", row["amount_captured"], row["currency"]),
            "created_at": time.time(),
        }
        if dispute["status"] == "needs_response":  # a returned debit is final: nothing to answer
            dispute["evidence_due_by"] = dispute["created_at"] + self.opts.evidence_days * 86400
        self.store.insert("disputes", dispute)
        self.emit("dispute", row, dispute)
        return dispute

    def open_dispute(self, payment_id: str, reason: str) -> Row:
        """Tests: the shopper (or their bank) disputes a captured payment now, with `reason`
        (`DISPUTE_REASONS_OPENABLE`); one dispute per payment, as the sandbox's own disputes."""
        if reason not in DISPUTE_REASONS_OPENABLE:
            raise SandboxError(400, "invalid_reason", f"reason is one of {sorted(DISPUTE_REASONS_OPENABLE)}.",
                               "reason")
        with self.store.tx():
            row = self.payment(payment_id)
            if row["state"] != "captured":
                raise SandboxError(409, "invalid_state", f"Cannot dispute a payment that is {row['state']}.")
            if self.disputes(row["id"]):
                raise SandboxError(409, "already_disputed", "The payment is disputed already.")
            return self._dispute_new(row, reason)

    def _job_loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.store.job_next()
                if job is None:
                    self._stop.wait(0.02)
                    continue
                job_id, kind, payload = job
                try:
                    self.run_job(kind, payload)
                except Exception:  # a failing job is logged and dropped, never retried in a loop
                    log.exception("sandbox job %s failed", kind)
                self.store.job_done(job_id)
            except Exception:  # keep the loop alive whatever happens
                log.exception("sandbox job loop error")
                self._stop.wait(0.5)

    # --- webhooks ---------------------------------------------------------------------
    def emit(self, event_type: str, payment: Row, extra: Row | None = None) -> str:
        event_id = new_id("evt_" if self.psp == "alpha" else "BE", 20)
        body = self.wire.event_body(self, event_type, event_id, self.payment(payment["id"]), extra)
        now = time.time()
        self.store.insert(
            "events",
            {
                "id": event_id,
                "type": event_type,
                "payment_id": payment["id"],
                "body": body,
                "created_at": now,
                "next_attempt_at": now + self._chaos_delay(),
            },
        )
        return event_id

    def _chaos_delay(self) -> float:
        """Chaos: a webhook sent up to `late_webhook_seconds` late (so out of order)."""
        late = self.chaos("late_webhook_seconds")
        if late <= 0:
            return 0.0
        self.chaos_counts["late_webhooks"] = self.chaos_counts.get("late_webhooks", 0) + 1
        return random.uniform(0, late)  # noqa: S311

    def _deliver(self, event: Row) -> None:
        url = self.opts.webhook_url
        body = bytes(event["body"])
        headers = {"Content-Type": "application/json", "User-Agent": f"{self.psp}-sandbox/1.0"}
        headers.update(self.wire.sign(body, self.opts.webhook_secret))
        error = None
        try:
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
            with _OPENER.open(req, timeout=5) as resp:
                ok = 200 <= resp.status < 300
                if not ok:
                    error = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            ok, error = False, f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"
        attempts = event["attempts"] + 1
        now = time.time()
        if ok:
            if event["id"] not in self._duplicated and self.chaos_hit("duplicate_webhooks", "duplicate_webhook_rate"):
                self._duplicated.add(event["id"])  # chaos: delivered once more, later
                again = now + self._chaos_delay()
                self.store.update("events", event["id"], {"attempts": attempts, "next_attempt_at": again})
                return
            self.store.update("events", event["id"], {"attempts": attempts, "delivered_at": now, "last_error": None})
            return
        backoff = min(self.opts.webhook_backoff * 2 ** (attempts - 1), 60.0)
        self.store.update(
            "events",
            event["id"],
            {
                "attempts": attempts,
                "next_attempt_at": now + backoff,
                "given_up": int(attempts >= self.opts.webhook_max_attempts),
                "last_error": error,
            },
        )

    def _webhook_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.opts.webhook_url:
                    self._stop.wait(0.2)
                    continue
                due = self.store.all(
                    "SELECT * FROM events WHERE delivered_at IS NULL AND given_up = 0 AND next_attempt_at <= ?"
                    " ORDER BY created_at LIMIT 20",
                    (time.time(),),
                )
                if not due:
                    self._stop.wait(0.05)
                    continue
                for event in due:
                    self._deliver(event)
            except Exception:
                log.exception("sandbox webhook loop error")
                self._stop.wait(0.5)

    def payments_debug(self, reference: str | None = None) -> list[Row]:
        """Every authorization (for tests: "exactly one authorization at the PSP"); no PAN."""
        if reference:
            rows = self.store.all("SELECT * FROM payments WHERE reference = ?", (reference,))
        else:
            rows = self.store.all("SELECT * FROM payments ORDER BY created_at")
        for r in rows:
            r.pop("card_number", None)
            r.pop("request_hash", None)
            r["operations"] = self.operations(r["id"])
            r["disputes"] = [{**d, "evidence": self.dispute_evidence(d["id"])} for d in self.disputes(r["id"])]
        return rows

    def resend(self, event_id: str) -> None:
        """Deliver an event again, as a PSP does when it is unsure the first one arrived."""
        if self.store.one("SELECT id FROM events WHERE id = ?", (event_id,)) is None:
            raise SandboxError(404, "not_found", "No such event.")
        self.store.update(
            "events", event_id, {"delivered_at": None, "given_up": 0, "next_attempt_at": time.time(), "attempts": 0}
        )

    def close_dispute(self, dispute_id: str, status: str) -> Row:
        """The card network decided an open dispute (`won` or `lost`): store it and send the
        dispute's webhook again with its final status, as a PSP does when a chargeback closes."""
        if status not in ("won", "lost"):
            raise SandboxError(400, "invalid_status", "status is won or lost.", "status")
        dispute = self.store.one("SELECT * FROM disputes WHERE id = ?", (dispute_id,))
        if dispute is None:
            raise SandboxError(404, "not_found", "No such dispute.")
        if dispute["status"] in ("won", "lost"):
            raise SandboxError(409, "dispute_closed", f"The dispute is already {dispute['status']}.")
        closed = {"status": status, "closed_at": time.time()}
        self.store.update("disputes", dispute_id, closed)
        dispute = {**dispute, **closed}
        self.emit("dispute", self.payment(dispute["payment_id"]), {**dispute, "event": "closed"})
        return dispute

    def return_refund(self, op_id: str) -> Row:
        """The shopper's bank sent a refund back after the PSP had reported it succeeded (the card
        account closed, say): the refund is `failed` (`refund_rejected`), the money is the
        merchant's again (`amount_refunded` lowered) and the refund's webhook goes out again with
        its new status, as real PSPs do (a REFUND_FAILED after the REFUND, a refund `failed` after
        `succeeded`)."""
        with self.store.tx():
            op = self.operation(op_id)
            if op["kind"] != "refund":
                raise SandboxError(400, "not_a_refund", "Only a refund can be returned.")
            if op["state"] != "succeeded":
                raise SandboxError(409, "invalid_state", f"Only a succeeded refund can be returned ({op['state']}).")
            # the refund did succeed (its day's report keeps it, `completed_at`); its return is
            # news of its own, reported on the day it happened (`returned_at`: a reversal line)
            self.store.update("operations", op_id, {"state": "failed", "decline": "refund_rejected",
                                                    "returned_at": time.time()})
            row = self.payment(op["payment_id"])
            self._set(row, amount_refunded=row["amount_refunded"] - op["amount"])
            op = self.operation(op_id)
            self.emit("refund", row, op)
        return op

    def dispute_evidence(self, dispute_id: str) -> Row | None:
        return self.store.one("SELECT * FROM dispute_evidence WHERE dispute_id = ?", (dispute_id,))

    def submit_evidence(self, dispute_id: str, *, reference: str, text: Any) -> tuple[Row, Row, bool]:
        """The merchant's answer to an open dispute, sent on to the card network: one submission
        per dispute, idempotent on the merchant's `reference` (the same reference and text again is
        the first submission, not another; the same reference with other text is
        `idempotency_conflict`). Refused: another submission already made (`evidence_already_submitted`),
        a decided dispute (`dispute_closed`), after `evidence_due_by` (`evidence_past_due`). Accepted,
        the dispute is `under_review`. Returns (evidence, dispute, created)."""
        if not reference:
            raise SandboxError(400, "reference_required", "A merchant reference is required.", "reference")
        if not isinstance(text, str) or not text.strip():
            raise SandboxError(400, "evidence_required", "Evidence text is required.", "text")
        with self.store.tx():
            dispute = self.dispute(dispute_id)
            found = self.dispute_evidence(dispute_id)
            if found is not None:
                if found["reference"] != reference:
                    raise SandboxError(409, "evidence_already_submitted", "Evidence was already submitted.")
                if found["text"] != text:
                    raise SandboxError(409, "idempotency_conflict", "This reference was used with other evidence.")
                return found, dispute, False
            if dispute["status"] in ("won", "lost"):
                raise SandboxError(409, "dispute_closed", f"The dispute is already {dispute['status']}.")
            due = dispute.get("evidence_due_by")
            if due is not None and time.time() > due:
                raise SandboxError(422, "evidence_past_due", "The evidence is past its due date.")
            evidence = {
                "id": new_id("dev_" if self.psp == "alpha" else "BV"),
                "dispute_id": dispute_id,
                "reference": reference,
                "text": text,
                "created_at": time.time(),
            }
            self.store.insert("dispute_evidence", evidence)
            self.store.update("disputes", dispute_id, {"status": "under_review"})
            return evidence, self.dispute(dispute_id), True

    def dispute_set_due(self, dispute_id: str, due: Any) -> Row:
        """Move a dispute's evidence due date (tests: "the due date has passed")."""
        self.dispute(dispute_id)
        if due is not None and not isinstance(due, int | float):
            raise SandboxError(400, "invalid_due", "evidence_due_by is unix seconds or null.", "evidence_due_by")
        self.store.update("disputes", dispute_id, {"evidence_due_by": due})
        return self.dispute(dispute_id)

    def reset(self) -> None:
        """Forget everything (tests that need a clean day, e.g. a report that reconciles 100 %)."""
        with self.store.tx() as c:
            for table in ("events", "jobs", "dispute_evidence", "disputes", "operations", "tokens", "payments"):
                c.execute(f"DELETE FROM {table}")  # noqa: S608

    def events(self) -> list[Row]:
        rows = self.store.all("SELECT * FROM events ORDER BY created_at")
        for r in rows:
            r["body"] = bytes(r["body"]).decode()
        return rows
