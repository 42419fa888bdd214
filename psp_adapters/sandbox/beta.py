"""Beta's wire format: an asynchronous API. It answers "received" (202) and sends the outcome
later as a signed webhook; a status inquiry shows the current state at any time.

Auth: `X-Api-Key: <api key>`. Amounts: `{"value": "10.00", "currency": "EUR"}`, decimal strings
in major units (ISO 4217 exponent). Idempotency: `reference` of the payment (also sent as
`Idempotency-Key`); `reference` of a modification within its payment.

    POST /api/payments                            -> 202 {"pspReference", "reference", "resultCode", "action"}
                                                     (resultCode: "Received" | "RedirectShopper")
    GET  /api/payments/<pspReference>             -> payment status
    GET  /api/payments?reference=…                -> payment status (404 if never received)
    POST /api/payments/<pspReference>/captures    {"reference", "amount"} -> 202 modification
    POST /api/payments/<pspReference>/cancels     {"reference"} -> 202 modification
    POST /api/payments/<pspReference>/refunds     {"reference", "amount"} -> 202 modification
    GET  /api/disputes/<pspReference>             -> dispute (404 if unknown): the dispute inquiry
    POST /api/disputes/<pspReference>/defense     {"reference", "defenseText"} -> 201 defense (200 on a replay);
                                                     409 evidence_already_submitted | dispute_closed |
                                                     idempotency_conflict, 422 evidence_past_due
    GET  /api/reports/settlement?date=YYYY-MM-DD  -> CSV
Payment methods: `{"type": "scheme", "number", "expiryMonth", "expiryYear", "cvc"}`,
`{"type": "storedCard", "storedPaymentMethodId"}`, `{"type": "bankRedirect", "issuer": "sandbox_bank"}`,
`{"type": "sepadirectdebit", "iban", "ownerName"}`.
Errors: `{"status": 422, "errorCode": "…", "message": "…", "field": "…"}`.
Webhooks: `{"eventId", "eventCode": AUTHORISATION|CAPTURE|CANCELLATION|REFUND|CHARGEBACK,
"success": bool, "pspReference", "originalReference", "merchantReference", "paymentReference",
"amount", "reason", "reasonCode", "eventDate", "additionalData"}`, header
`Beta-Signature: ts=<unix seconds>,sig=<hex HMAC-SHA256(secret, "<ts>.<raw body>")>`.
A dispute (`GET /api/disputes/<pspReference>`): `{"pspReference": "BD…", "originalReference",
"paymentReference", "amount", "reason", "reasonCode", "disputeStatus", "defenseDueDate", "creationDate",
"closedDate"}` (a CHARGEBACK notification's fields, with the dispute's current status).
A defense: `{"pspReference": "BV…", "reference", "disputePspReference", "disputeStatus", "creationDate",
"dispute": {…}}` (the dispute `under_review` once the defense is taken).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import time
from typing import Any

from psp_adapters.sandbox import reports
from psp_adapters.sandbox.core import AuthInput, Core, Row, SandboxError
from psp_adapters.sandbox.money import (
    UnknownCurrencyError,
    currency_normalize,
    minor_from_decimal_string,
    minor_to_decimal_string,
)
from psp_adapters.sandbox.server import Request, Response, Route

# normalized decline name -> (beta refusal reason code, reason text)
REFUSALS = {
    "generic_decline": ("2", "Refused"),
    "insufficient_funds": ("12", "Not enough balance"),
    "expired_card": ("6", "Expired Card"),
    "incorrect_number": ("8", "Invalid Card Number"),
    "processing_error": ("4", "Acquirer Error"),
    "authentication_failed": ("11", "3D Not Authenticated"),
    "authentication_required": ("38", "Authentication required"),
    "refund_rejected": ("R01", "Refund Rejected"),
}
SEPA_REFUSALS = {
    "insufficient_funds": ("AM04", "Insufficient funds"),
    "generic_decline": ("MS03", "Reason not specified"),
}
CHARGEBACK_REASONS = {
    "fraudulent": ("10.4", "Fraud - Card Absent Environment"),
    "debit_returned": ("MD06", "Refund request by end customer"),
    "debit_unauthorized": ("MD01", "No mandate / unauthorised transaction"),
}

STATUS = {
    "received": "received",
    "requires_action": "redirect_shopper",
    "authorized": "authorised",
    "captured": "captured",
    "voided": "cancelled",
    "declined": "refused",
}
EVENT_CODES = {"authorization": "AUTHORISATION", "capture": "CAPTURE", "void": "CANCELLATION", "refund": "REFUND"}
KIND_PATH = {"captures": "capture", "cancels": "void", "refunds": "refund"}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _money(minor: int, currency: str) -> dict[str, str]:
    return {"value": minor_to_decimal_string(minor, currency), "currency": currency}


class BetaWire:
    psp = "beta"
    methods = frozenset({"card", "token", "bank_redirect", "sepa_debit"})

    def __init__(self) -> None:
        self.core: Core

    def api_key_from(self, headers: Any) -> str:
        return headers.get("X-Api-Key") or ""

    def error(self, err: SandboxError) -> Response:
        body: dict[str, Any] = {"status": err.status, "errorCode": err.code, "message": err.message}
        if err.param:
            body["field"] = err.param
        return Response.json(err.status, body)

    def sign(self, body: bytes, secret: str) -> dict[str, str]:
        ts = str(int(time.time()))
        sig = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        return {"Beta-Signature": f"ts={ts},sig={sig}"}

    # --- rendering --------------------------------------------------------------------
    def _refusal(self, row: Row, decline: str | None) -> tuple[str | None, str | None]:
        if not decline:
            return None, None
        table = SEPA_REFUSALS if row["method"] == "sepa_debit" else REFUSALS
        return table.get(decline, ("2", "Refused"))

    def render_modification(self, op: Row, payment: Row) -> dict[str, Any]:
        code, reason = REFUSALS.get(op["decline"] or "", (None, None))
        return {
            "pspReference": op["id"],
            "originalReference": payment["id"],
            "reference": op["reference"],
            "paymentReference": payment["reference"],
            "type": {"capture": "capture", "void": "cancel", "refund": "refund"}[op["kind"]],
            "status": op["state"],
            "amount": _money(op["amount"], op["currency"]),
            "reason": reason,
            "reasonCode": code,
            # a refund sent back after it succeeded (`failed` now): when that happened
            "returnedAt": _iso(op.get("returned_at")) if op["kind"] == "refund" else None,
        }

    def render_payment(self, row: Row) -> dict[str, Any]:
        code, reason = self._refusal(row, row["decline"])
        url = self.core.action_url(row)
        return {
            "pspReference": row["id"],
            "reference": row["reference"],
            "status": STATUS[row["state"]],
            "paymentMethodType": row["method"],
            "amount": _money(row["amount"], row["currency"]),
            "capturedAmount": _money(row["amount_captured"], row["currency"]),
            "refundedAmount": _money(row["amount_refunded"], row["currency"]),
            "refusalReason": reason,
            "refusalReasonCode": code,
            "action": {"type": "redirect", "url": url} if url else None,
            "networkTxReference": row["network_transaction_id"],
            "storedPaymentMethodId": row["token"] if row["store_method"] else None,
            "modifications": [self.render_modification(o, row) for o in self.core.operations(row["id"])],
            "creationDate": _iso(row["created_at"]),
        }

    def render_dispute(self, dispute: Row, payment: Row) -> dict[str, Any]:
        code, reason = CHARGEBACK_REASONS.get(dispute["reason"], ("13.1", "Merchandise not received"))
        return {
            "pspReference": dispute["id"],
            "originalReference": payment["id"],
            "paymentReference": payment["reference"],
            "amount": _money(dispute["amount"], dispute["currency"]),
            "reason": reason,
            "reasonCode": code,
            "disputeStatus": dispute["status"],
            "defenseDueDate": _iso(dispute.get("evidence_due_by")),
            "creationDate": _iso(dispute["created_at"]),
            "closedDate": _iso(dispute.get("closed_at")),
        }

    def event_body(self, core: Core, event_type: str, event_id: str, payment: Row, extra: Row | None) -> bytes:
        base: dict[str, Any] = {
            "eventId": event_id,
            "eventDate": _iso(time.time()),
            "paymentReference": payment["reference"],
        }
        if event_type == "authorization":
            code, reason = self._refusal(payment, payment["decline"])
            success = payment["state"] in ("authorized", "captured")
            body = {
                **base,
                "eventCode": "AUTHORISATION",
                "success": success,
                "pspReference": payment["id"],
                "originalReference": None,
                "merchantReference": payment["reference"],
                "amount": _money(payment["amount"], payment["currency"]),
                "reason": reason,
                "reasonCode": code,
                "additionalData": {
                    "paymentMethodType": payment["method"],
                    "capturedAmount": minor_to_decimal_string(payment["amount_captured"], payment["currency"]),
                    "networkTxReference": payment["network_transaction_id"],
                    "storedPaymentMethodId": payment["token"] if payment["store_method"] else None,
                },
            }
        elif event_type == "dispute":
            assert extra is not None
            code, reason = CHARGEBACK_REASONS.get(extra["reason"], ("13.1", "Merchandise not received"))
            body = {
                **base,
                "eventCode": "CHARGEBACK",
                "success": True,
                "pspReference": extra["id"],
                "originalReference": payment["id"],
                "merchantReference": payment["reference"],
                "amount": _money(extra["amount"], extra["currency"]),
                "reason": reason,
                "reasonCode": code,
                "additionalData": {"disputeStatus": extra["status"],
                                   "defenseDueDate": _iso(extra.get("evidence_due_by"))},
            }
        else:
            assert extra is not None
            code, reason = REFUSALS.get(extra["decline"] or "", (None, None))
            body = {
                **base,
                "eventCode": EVENT_CODES[extra["kind"]],
                "success": extra["state"] == "succeeded",
                "pspReference": extra["id"],
                "originalReference": payment["id"],
                "merchantReference": extra["reference"],
                "amount": _money(extra["amount"], extra["currency"]),
                "reason": reason,
                "reasonCode": code,
                "additionalData": {},
            }
        return json.dumps(body).encode()

    # --- handlers ---------------------------------------------------------------------
    def routes(self) -> list[Route]:
        def r(method: str, pattern: str, handler: Any) -> Route:
            return Route(method, re.compile(pattern), handler)

        return [
            r("POST", r"/api/payments", self.create),
            r("GET", r"/api/payments", self.find),
            r("GET", r"/api/payments/(?P<id>BP[A-Z0-9]+)", self.retrieve),
            r("POST", r"/api/payments/(?P<id>BP[A-Z0-9]+)/(?P<kind>captures|cancels|refunds)", self.modify),
            r("GET", r"/api/disputes/(?P<id>BD[A-Za-z0-9]+)", self.dispute),
            r("POST", r"/api/disputes/(?P<id>BD[A-Za-z0-9]+)/defense", self.defense),
            r("GET", r"/api/reports/settlement", self.report),
        ]

    @staticmethod
    def _amount(data: Any, field: str) -> tuple[int, str]:
        if not isinstance(data, dict):
            raise SandboxError(422, "invalid_amount", "amount must be {value, currency}.", field)
        try:
            currency = currency_normalize(str(data.get("currency") or ""))
        except UnknownCurrencyError:
            raise SandboxError(422, "invalid_currency", "Unknown currency.", f"{field}.currency") from None
        try:
            return minor_from_decimal_string(str(data.get("value")), currency), currency
        except ValueError as exc:
            raise SandboxError(422, "invalid_amount", str(exc), f"{field}.value") from None

    def create(self, req: Request) -> Response:
        data = req.json()
        amount, currency = self._amount(data.get("amount"), "amount")
        pm = data.get("paymentMethod")
        if not isinstance(pm, dict):
            raise SandboxError(422, "payment_method_required", "paymentMethod is required.", "paymentMethod")
        kind = pm.get("type")
        fields: dict[str, Any] = {}
        if kind == "scheme":
            try:
                fields = {
                    "method": "card",
                    "card_number": str(pm.get("number") or ""),
                    "exp_month": int(str(pm.get("expiryMonth"))),
                    "exp_year": int(str(pm.get("expiryYear"))),
                }
            except (TypeError, ValueError):
                raise SandboxError(422, "invalid_expiry", "expiryMonth/expiryYear required.", "paymentMethod") from None
        elif kind == "storedCard":
            fields = {"method": "token", "token": pm.get("storedPaymentMethodId")}
        elif kind == "bankRedirect":
            fields = {"method": "bank_redirect", "bank": pm.get("issuer")}
        elif kind == "sepadirectdebit":
            fields = {"method": "sepa_debit", "iban": pm.get("iban"), "holder": pm.get("ownerName")}
        else:
            raise SandboxError(422, "payment_method_unsupported", f"Unknown paymentMethod.type {kind!r}.")
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise SandboxError(422, "invalid_metadata", "metadata must be an object.", "metadata")
        interaction = data.get("shopperInteraction", "Ecommerce")
        if interaction not in ("Ecommerce", "ContAuth"):
            raise SandboxError(422, "invalid_interaction", "shopperInteraction is Ecommerce or ContAuth.")
        inp = AuthInput(
            reference=data.get("reference"),  # type: ignore[arg-type]
            amount=amount,
            currency=currency,
            capture=data.get("captureMode", "manual") == "immediate",
            off_session=interaction == "ContAuth",
            network_transaction_id=data.get("networkTxReference"),
            store_method=bool(data.get("storePaymentMethod", False)),
            return_url=data.get("returnUrl"),
            description=str(data.get("description") or ""),
            metadata={str(k): str(v) for k, v in metadata.items()},
            **fields,
        )
        key = req.headers.get("Idempotency-Key")
        if key and key != inp.reference:
            raise SandboxError(422, "idempotency_key_mismatch", "Idempotency-Key must equal reference.")
        try:
            row, created, _ = self.core.authorize(inp)
        except SandboxError as err:
            if err.status == 400:
                err.status = 422
            raise
        url = self.core.action_url(row)
        body = {
            "pspReference": row["id"],
            "reference": row["reference"],
            "resultCode": "RedirectShopper" if url else "Received",
            "action": {"type": "redirect", "url": url} if url else None,
        }
        if not created:
            return Response.json(200, {**body, "status": STATUS[row["state"]]}, **{"Idempotent-Replayed": "true"})
        return Response.json(202, body)

    def find(self, req: Request) -> Response:
        ref = req.query.get("reference")
        if not ref:
            raise SandboxError(422, "reference_required", "reference is required.")
        return Response.json(200, self.render_payment(self.core.payment_by_reference(ref)))

    def retrieve(self, req: Request) -> Response:
        return Response.json(200, self.render_payment(self.core.payment(req.params["id"])))

    def modify(self, req: Request) -> Response:
        data = req.json()
        kind = KIND_PATH[req.params["kind"]]
        payment = self.core.payment(req.params["id"])
        try:
            if kind == "void":
                op, created = self.core.void(payment["id"], reference=data.get("reference") or "")
            else:
                amount = currency = None
                if data.get("amount") is not None:
                    amount, currency = self._amount(data.get("amount"), "amount")
                fn = self.core.capture if kind == "capture" else self.core.refund
                op, created = fn(payment["id"], reference=data.get("reference") or "", amount=amount, currency=currency)
        except SandboxError as err:
            if err.status == 400:
                err.status = 422
            raise
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response.json(202 if created else 200, self.render_modification(op, payment), **headers)

    def dispute(self, req: Request) -> Response:
        """The dispute inquiry: the dispute as beta holds it, with its current status."""
        dispute = self.core.dispute(req.params["id"])
        return Response.json(200, self.render_dispute(dispute, self.core.payment(dispute["payment_id"])))

    def defense(self, req: Request) -> Response:
        """The merchant's defense (evidence), sent on to the network: one per dispute."""
        data = req.json()
        reference = str(data.get("reference") or "")
        key = req.headers.get("Idempotency-Key")
        if key and key != reference:
            raise SandboxError(422, "idempotency_key_mismatch", "Idempotency-Key must equal reference.")
        try:
            ev, dispute, created = self.core.submit_evidence(
                req.params["id"], reference=reference, text=data.get("defenseText")
            )
        except SandboxError as err:
            if err.status == 400:
                err.status = 422
            raise
        body = {
            "pspReference": ev["id"],
            "reference": ev["reference"],
            "disputePspReference": dispute["id"],
            "disputeStatus": dispute["status"],
            "creationDate": _iso(ev["created_at"]),
            "dispute": self.render_dispute(dispute, self.core.payment(dispute["payment_id"])),
        }
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response.json(201 if created else 200, body, **headers)

    def report(self, req: Request) -> Response:
        try:
            day = dt.date.fromisoformat(req.query.get("date", ""))
        except ValueError:
            raise SandboxError(422, "invalid_date", "date must be YYYY-MM-DD.") from None
        body = reports.render("beta", self.core.store.path, day)
        return Response(200, body, content_type="text/csv; charset=utf-8")
