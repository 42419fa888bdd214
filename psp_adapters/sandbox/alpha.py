"""Alpha's wire format: a synchronous JSON API that answers with the outcome.

Auth: `Authorization: Bearer <api key>`. Amounts: integers in minor units. Idempotency: the
`merchant_reference` of an authorization (also sent as `Idempotency-Key`); the
`merchant_reference` of a capture/void/refund within its authorization.

    POST /v1/authorizations                       -> 201 authorization (200 on an idempotent replay)
    GET  /v1/authorizations/<id>                  -> authorization
    GET  /v1/authorizations?merchant_reference=…  -> authorization (404 if never received)
    POST /v1/authorizations/<id>/capture          {"merchant_reference", "amount"} -> operation
    POST /v1/authorizations/<id>/void             {"merchant_reference"} -> operation
    POST /v1/authorizations/<id>/refunds          {"merchant_reference", "amount"} -> operation
    GET  /v1/disputes/<id>                        -> dispute (404 if unknown): the dispute inquiry
    POST /v1/disputes/<id>/evidence               {"merchant_reference", "text"} -> 201 evidence (200 on a
                                                     replay); 409 evidence_already_submitted | dispute_closed |
                                                     idempotency_conflict, 422 evidence_past_due
    GET  /v1/settlement-reports/<YYYY-MM-DD>      -> CSV
Errors: `{"error": {"code", "message", "param"}}`.
Webhooks: `{"id", "type", "created", "data": {...}}`, header `X-Alpha-Signature: <hex HMAC-SHA256(secret, raw body)>`.
Types: authorization.updated (after 3-D Secure), refund.succeeded / refund.failed (asynchronous
refunds), dispute.created, dispute.closed (the network decided: final status won or lost).
A dispute (webhook `data` and `GET /v1/disputes/<id>`): `{"object": "dispute", "id", "authorization_id",
"authorization_reference", "amount", "currency", "reason_code", "status", "evidence_due_by", "created", "closed"}`.
Evidence: `{"object": "dispute_evidence", "id": "dev_…", "merchant_reference", "created", "dispute": {…}}`
(the dispute `under_review` once evidence is taken).
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
from psp_adapters.sandbox.server import Request, Response, Route

# normalized decline name -> alpha's response code (ISO 8583 style)
RESPONSE_CODES = {
    None: ("00", "Approved"),
    "generic_decline": ("05", "Do not honour"),
    "insufficient_funds": ("51", "Insufficient funds"),
    "expired_card": ("54", "Expired card"),
    "incorrect_number": ("14", "Invalid card number"),
    "processing_error": ("96", "System malfunction"),
    "authentication_failed": ("R1", "3-D Secure authentication failed"),
    "authentication_required": ("1A", "Strong customer authentication required"),
    "refund_rejected": ("R5", "Refund rejected by issuer"),
}
DISPUTE_REASONS = {"fraudulent": "4837", "debit_returned": "RTRN", "debit_unauthorized": "4837", "general": "4853"}

STATUS = {
    "received": "processing",
    "requires_action": "challenge_required",
    "authorized": "authorized",
    "captured": "captured",
    "voided": "voided",
    "declined": "declined",
}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


class AlphaWire:
    psp = "alpha"
    methods = frozenset({"card", "token"})

    def __init__(self) -> None:
        self.core: Core

    # --- auth, errors, signatures -----------------------------------------------------
    def api_key_from(self, headers: Any) -> str:
        value = headers.get("Authorization") or ""
        return value[7:] if value.startswith("Bearer ") else ""

    def error(self, err: SandboxError) -> Response:
        body: dict[str, Any] = {"code": err.code, "message": err.message}
        if err.param:
            body["param"] = err.param
        return Response.json(err.status, {"error": body})

    def sign(self, body: bytes, secret: str) -> dict[str, str]:
        return {"X-Alpha-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}

    # --- rendering --------------------------------------------------------------------
    def render_operation(self, op: Row, payment: Row) -> dict[str, Any]:
        code, message = RESPONSE_CODES.get(op["decline"], ("R5", op["decline"] or ""))
        return {
            "object": "operation",
            "id": op["id"],
            "type": op["kind"],
            "authorization_id": payment["id"],
            "authorization_reference": payment["reference"],
            "merchant_reference": op["reference"],
            "amount": op["amount"],
            "currency": op["currency"],
            "status": op["state"] if op["state"] != "received" else "pending",
            "response_code": code if op["state"] == "failed" else None,
            "response_message": message if op["state"] == "failed" else None,
            "created": _iso(op["created_at"]),
            # a refund sent back after it succeeded (`failed` now): when that happened
            "returned_at": _iso(op.get("returned_at")) if op["kind"] == "refund" else None,
        }

    def render_authorization(self, row: Row) -> dict[str, Any]:
        code, message = RESPONSE_CODES.get(row["decline"], ("05", row["decline"] or ""))
        url = self.core.action_url(row)
        ops = self.core.operations(row["id"])
        return {
            "object": "authorization",
            "id": row["id"],
            "merchant_reference": row["reference"],
            "status": STATUS[row["state"]],
            "amount": row["amount"],
            "currency": row["currency"],
            "amount_captured": row["amount_captured"],
            "amount_refunded": row["amount_refunded"],
            "response_code": None if row["state"] in ("received", "requires_action") else code,
            "response_message": None if row["state"] in ("received", "requires_action") else message,
            "challenge": {"url": url} if url else None,
            "card": {"last4": row["card_last4"]},
            "network_transaction_id": row["network_transaction_id"],
            "card_token": row["token"] if row["store_method"] else None,
            "operations": [self.render_operation(o, row) for o in ops],
            "created": _iso(row["created_at"]),
        }

    def render_dispute(self, dispute: Row, payment: Row) -> dict[str, Any]:
        return {
            "object": "dispute",
            "id": dispute["id"],
            "authorization_id": payment["id"],
            "authorization_reference": payment["reference"],
            "amount": dispute["amount"],
            "currency": dispute["currency"],
            "reason_code": DISPUTE_REASONS.get(dispute["reason"], "4853"),
            "status": dispute["status"],
            "evidence_due_by": _iso(dispute.get("evidence_due_by")),
            "created": _iso(dispute["created_at"]),
            "closed": _iso(dispute.get("closed_at")),
        }

    def event_body(self, core: Core, event_type: str, event_id: str, payment: Row, extra: Row | None) -> bytes:
        if event_type == "authorization":
            typ, data = "authorization.updated", self.render_authorization(payment)
        elif event_type == "dispute":
            assert extra is not None
            # the dispute's opening (needs_response; a SEPA return opens lost), then the network's
            # decision (`close_dispute`): dispute.closed with the final status
            typ = "dispute.closed" if extra.get("event") == "closed" else "dispute.created"
            data = self.render_dispute(extra, payment)
        else:
            assert extra is not None
            typ = f"{extra['kind']}.{extra['state']}"
            data = self.render_operation(extra, payment)
        created = _iso(time.time())
        return json.dumps({"id": event_id, "type": typ, "created": created, "data": data}).encode()

    # --- handlers ---------------------------------------------------------------------
    def routes(self) -> list[Route]:
        def r(method: str, pattern: str, handler: Any) -> Route:
            return Route(method, re.compile(pattern), handler)

        return [
            r("POST", r"/v1/authorizations", self.create),
            r("GET", r"/v1/authorizations", self.find),
            r("GET", r"/v1/authorizations/(?P<id>auth_[A-Z0-9]+)", self.retrieve),
            r("POST", r"/v1/authorizations/(?P<id>auth_[A-Z0-9]+)/capture", self.capture),
            r("POST", r"/v1/authorizations/(?P<id>auth_[A-Z0-9]+)/void", self.void),
            r("POST", r"/v1/authorizations/(?P<id>auth_[A-Z0-9]+)/refunds", self.refund),
            r("GET", r"/v1/disputes/(?P<id>dp_[A-Za-z0-9]+)", self.dispute),
            r("POST", r"/v1/disputes/(?P<id>dp_[A-Za-z0-9]+)/evidence", self.evidence),
            r("GET", r"/v1/settlement-reports/(?P<date>\d{4}-\d{2}-\d{2})", self.report),
        ]

    def create(self, req: Request) -> Response:
        data = req.json()
        card = data.get("card")
        token = data.get("card_token")
        if isinstance(card, dict):
            method = "card"
        elif token:
            method = "token"
        else:
            raise SandboxError(400, "payment_method_required", "card or card_token is required.", "card")
        card = card or {}
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise SandboxError(400, "invalid_metadata", "metadata must be an object.", "metadata")
        initiator = data.get("initiator", "customer")
        if initiator not in ("customer", "merchant"):
            raise SandboxError(400, "invalid_initiator", "initiator is customer or merchant.", "initiator")
        inp = AuthInput(
            reference=data.get("merchant_reference") or "",
            amount=data.get("amount"),  # type: ignore[arg-type]
            currency=str(data.get("currency") or ""),
            method=method,
            card_number=str(card.get("number") or "") or None,
            exp_month=card.get("expiry_month"),
            exp_year=card.get("expiry_year"),
            token=token,
            capture=bool(data.get("capture", False)),
            off_session=initiator == "merchant",
            network_transaction_id=data.get("network_transaction_id"),
            store_method=bool(data.get("store_card", False)),
            return_url=data.get("return_url"),
            description=str(data.get("description") or ""),
            metadata={str(k): str(v) for k, v in metadata.items()},
        )
        key = req.headers.get("Idempotency-Key")
        if key and key != inp.reference:
            raise SandboxError(400, "idempotency_key_mismatch", "Idempotency-Key must equal merchant_reference.")
        row, created, hold = self.core.authorize(inp)
        headers = {} if created else {"Idempotent-Replayed": "true"}
        resp = Response.json(201 if created else 200, self.render_authorization(row), **headers)
        resp.hold = hold
        return resp

    def find(self, req: Request) -> Response:
        ref = req.query.get("merchant_reference")
        if not ref:
            raise SandboxError(400, "merchant_reference_required", "merchant_reference is required.")
        return Response.json(200, self.render_authorization(self.core.payment_by_reference(ref)))

    def retrieve(self, req: Request) -> Response:
        return Response.json(200, self.render_authorization(self.core.payment(req.params["id"])))

    def _op_response(self, op: Row, created: bool) -> Response:
        payment = self.core.payment(op["payment_id"])
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response.json(201 if created else 200, self.render_operation(op, payment), **headers)

    def capture(self, req: Request) -> Response:
        data = req.json()
        op, created = self.core.capture(
            req.params["id"], reference=data.get("merchant_reference") or "", amount=data.get("amount"), currency=None
        )
        return self._op_response(op, created)

    def void(self, req: Request) -> Response:
        data = req.json()
        op, created = self.core.void(req.params["id"], reference=data.get("merchant_reference") or "")
        return self._op_response(op, created)

    def refund(self, req: Request) -> Response:
        data = req.json()
        op, created = self.core.refund(
            req.params["id"], reference=data.get("merchant_reference") or "", amount=data.get("amount"), currency=None
        )
        return self._op_response(op, created)

    def dispute(self, req: Request) -> Response:
        """The dispute inquiry: the dispute as alpha holds it (its webhook's `data`, current status)."""
        dispute = self.core.dispute(req.params["id"])
        return Response.json(200, self.render_dispute(dispute, self.core.payment(dispute["payment_id"])))

    def evidence(self, req: Request) -> Response:
        """The merchant's evidence, sent on to the network: one submission per dispute."""
        data = req.json()
        reference = str(data.get("merchant_reference") or "")
        key = req.headers.get("Idempotency-Key")
        if key and key != reference:
            raise SandboxError(400, "idempotency_key_mismatch", "Idempotency-Key must equal merchant_reference.")
        ev, dispute, created = self.core.submit_evidence(req.params["id"], reference=reference, text=data.get("text"))
        body = {
            "object": "dispute_evidence",
            "id": ev["id"],
            "merchant_reference": ev["reference"],
            "created": _iso(ev["created_at"]),
            "dispute": self.render_dispute(dispute, self.core.payment(dispute["payment_id"])),
        }
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response.json(201 if created else 200, body, **headers)

    def report(self, req: Request) -> Response:
        try:
            day = dt.date.fromisoformat(req.params["date"])
        except ValueError:
            raise SandboxError(400, "invalid_date", "date must be YYYY-MM-DD.") from None
        body = reports.render("alpha", self.core.store.path, day)
        return Response(200, body, content_type="text/csv; charset=utf-8")
