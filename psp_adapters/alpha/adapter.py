"""Alpha: a synchronous PSP. The authorization answer carries the outcome."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from psp_adapters.alpha import settlement, webhooks
from psp_adapters.alpha.client import AlphaClient
from psp_adapters.alpha.codes import DECLINE_CODES, DISPUTE_REASONS
from psp_adapters.base import BaseAdapter
from psp_adapters.codes import decline_for
from psp_adapters.errors import PaymentMethodUnsupportedError, PspProtocolError, WebhookPayloadError
from psp_adapters.port import (
    AuthorizeRequest,
    AuthorizeResult,
    Capabilities,
    CaptureRequest,
    CardData,
    Decline,
    DisputeInfo,
    DisputeReason,
    DisputeResult,
    DisputeStatus,
    FeeSchedule,
    NextAction,
    OperationKind,
    OperationResult,
    Outcome,
    PaymentMethodType,
    PspEvent,
    PspEventKind,
    PspReference,
    PspState,
    RefundRequest,
    SettlementCsvLayout,
    SettlementReport,
    SettlementRow,
    StoredCardData,
    VoidRequest,
)

STATES = {
    "processing": PspState.PENDING,
    "challenge_required": PspState.REQUIRES_ACTION,
    "authorized": PspState.AUTHORIZED,
    "captured": PspState.CAPTURED,
    "voided": PspState.VOIDED,
    "declined": PspState.DECLINED,
}
OP_KINDS = {"capture": OperationKind.CAPTURE, "void": OperationKind.VOID, "refund": OperationKind.REFUND}


def _decline(code: str | None, message: str | None) -> Decline:
    return decline_for(DECLINE_CODES, code, message or "")


def _currency(value: Any) -> str:
    """The PSP's currency as the port states it: an upper-case ISO 4217 code (alpha may answer
    `eur`; compared with ours as it came, it was a currency mismatch)."""
    if not isinstance(value, str):
        raise ValueError(f"currency is not a string: {value!r}")
    return value.strip().upper()


def _outcome_of(state: PspState, decline: Decline | None) -> Outcome:
    if state == PspState.DECLINED:
        return Outcome.SOFT_DECLINED if decline and decline.may_cascade else Outcome.DECLINED
    if state == PspState.REQUIRES_ACTION:
        return Outcome.REQUIRES_ACTION
    if state == PspState.PENDING:
        return Outcome.PENDING
    return Outcome.APPROVED


class AlphaAdapter(BaseAdapter):
    capabilities = Capabilities(payment_methods=frozenset({PaymentMethodType.CARD}), asynchronous=False)
    default_fee_schedule = FeeSchedule(capture_per_mille=14, capture_fixed=25, chargeback_fixed=1500)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}

    @property
    def api(self) -> AlphaClient:
        return AlphaClient(self.client)

    # --- mapping ----------------------------------------------------------------------
    def _operation(self, data: Mapping[str, Any]) -> OperationResult:
        try:
            return self._operation_of(data)
        except (KeyError, TypeError, ValueError) as exc:  # as `_result`: unreadable is unknown, never a 500
            raise PspProtocolError(f"unexpected operation answer: {exc!r}", connector=self.name) from None

    def _operation_of(self, data: Mapping[str, Any]) -> OperationResult:
        status = data.get("status")
        decline = None
        if status == "succeeded":
            outcome = Outcome.APPROVED
        elif status == "pending":
            outcome = Outcome.PENDING
        elif status == "failed":
            outcome = Outcome.DECLINED
            decline = _decline(data.get("response_code"), data.get("response_message"))
        else:
            raise PspProtocolError(f"unknown operation status {status!r}", connector=self.name)
        return OperationResult(
            kind=OP_KINDS[data["type"]],
            outcome=outcome,
            reference=data["merchant_reference"],
            psp_reference=data.get("id"),
            payment=PspReference(data["authorization_reference"], data["authorization_id"]),
            amount=int(data["amount"]),
            currency=_currency(data["currency"]),
            decline=decline,
            returned=outcome == Outcome.DECLINED and bool(data.get("returned_at")),
        )

    def _result(self, data: Mapping[str, Any]) -> AuthorizeResult:
        try:
            state = STATES[data["status"]]
            decline = None
            if state == PspState.DECLINED:
                decline = _decline(data.get("response_code"), data.get("response_message"))
            challenge = data.get("challenge") or {}
            return AuthorizeResult(
                outcome=_outcome_of(state, decline),
                payment=PspReference(data["merchant_reference"], data["id"]),
                state=state,
                amount=int(data["amount"]),
                currency=_currency(data["currency"]),
                decline=decline,
                action=NextAction(redirect_url=challenge["url"]) if challenge.get("url") else None,
                amount_captured=int(data.get("amount_captured") or 0),
                amount_refunded=int(data.get("amount_refunded") or 0),
                network_transaction_id=data.get("network_transaction_id"),
                payment_method_token=data.get("card_token"),
                operations=tuple(self._operation(o) for o in data.get("operations") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PspProtocolError(f"unexpected authorization answer: {exc!r}", connector=self.name) from None

    def _dispute(self, data: Mapping[str, Any]) -> DisputeResult:
        """A dispute object (a dispute webhook's `data`, or the dispute inquiry's answer)."""
        reason_code = str(data.get("reason_code") or "")
        return DisputeResult(
            payment=PspReference(data["authorization_reference"], data["authorization_id"]),
            dispute=DisputeInfo(
                psp_dispute_id=data["id"],
                reason=DISPUTE_REASONS.get(reason_code, DisputeReason.GENERAL),
                status=DisputeStatus(data.get("status") or "needs_response"),
                psp_reason=reason_code,
                evidence_due_by=webhooks.parse_time(data["evidence_due_by"]) if data.get("evidence_due_by") else None,
            ),
            amount=int(data["amount"]),
            currency=_currency(data["currency"]),
        )

    def _evidence(self, data: Mapping[str, Any]) -> tuple[str, DisputeResult]:
        return str(data["id"]), self._dispute(data["dispute"])

    def _psp_id(self, ref: PspReference) -> str:
        if ref.psp_reference:
            return ref.psp_reference
        return self._looked_up_id(self.api.find_authorization(ref.reference).get("id"), ref)

    # --- the port ---------------------------------------------------------------------
    def authorize(self, req: AuthorizeRequest) -> AuthorizeResult:
        pm = req.payment_method
        body: dict[str, Any] = {
            "merchant_reference": req.reference,
            "amount": req.amount,
            "currency": req.currency.upper(),
            "capture": req.capture,
            "initiator": "merchant" if req.off_session else "customer",
            "store_card": req.store_payment_method,
            "description": req.description,
            "metadata": dict(req.metadata),
        }
        if isinstance(pm, CardData):
            body["card"] = {"number": pm.number, "expiry_month": pm.exp_month, "expiry_year": pm.exp_year}
            if pm.cvc:
                body["card"]["cvc"] = pm.cvc
            if pm.holder_name:
                body["card"]["holder"] = pm.holder_name
        elif isinstance(pm, StoredCardData):
            body["card_token"] = pm.token
        else:
            raise PaymentMethodUnsupportedError(f"alpha does not take {pm.type}", connector=self.name)
        if req.network_transaction_id:
            body["network_transaction_id"] = req.network_transaction_id
        if req.return_url:
            body["return_url"] = req.return_url
        _, data = self.api.create_authorization(body)
        return self._result(data)

    def complete_authentication(self, ref: PspReference, *, params: Mapping[str, str] | None = None) -> AuthorizeResult:
        # alpha's challenge page settles the authorization itself: its state is the answer
        return self.inquire(ref)

    def inquire(self, ref: PspReference) -> AuthorizeResult:
        if ref.psp_reference:
            return self._result(self.api.get_authorization(ref.psp_reference))
        return self._result(self.api.find_authorization(ref.reference))

    def capture(self, req: CaptureRequest) -> OperationResult:
        body = {"merchant_reference": req.reference, "amount": req.amount}
        return self._operation(self.api.operation(self._psp_id(req.payment), "capture", body))

    def void(self, req: VoidRequest) -> OperationResult:
        body = {"merchant_reference": req.reference}
        return self._operation(self.api.operation(self._psp_id(req.payment), "void", body))

    def refund(self, req: RefundRequest) -> OperationResult:
        body = {"merchant_reference": req.reference, "amount": req.amount}
        return self._operation(self.api.operation(self._psp_id(req.payment), "refunds", body))

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> PspEvent:
        webhooks.verify(body=body, headers=self._lower(headers), secrets=self._webhook_secrets)
        event = webhooks.load(body)
        data = event["data"]
        typ = str(event.get("type") or "")
        try:
            occurred = webhooks.parse_time(event.get("created"))
            if typ == "authorization.updated":
                r = self._result(data)
                return PspEvent(
                    event_id=event["id"],
                    kind=PspEventKind.AUTHORIZATION,
                    outcome=r.outcome,
                    payment=r.payment,
                    amount=r.amount,
                    currency=r.currency,
                    occurred_at=occurred,
                    decline=r.decline,
                    action=r.action,
                    amount_captured=r.amount_captured,
                    network_transaction_id=r.network_transaction_id,
                    payment_method_token=r.payment_method_token,
                )
            if typ in ("dispute.created", "dispute.closed"):
                d = self._dispute(data)
                return PspEvent(
                    event_id=event["id"],
                    kind=PspEventKind.DISPUTE,
                    outcome=Outcome.APPROVED,
                    payment=d.payment,
                    amount=d.amount,
                    currency=d.currency,
                    occurred_at=occurred,
                    dispute=d.dispute,
                )
            if typ.split(".")[0] in OP_KINDS:
                op = self._operation(data)
                return PspEvent(
                    event_id=event["id"],
                    kind=PspEventKind(op.kind.value),
                    outcome=op.outcome,
                    payment=op.payment,
                    amount=op.amount,
                    currency=op.currency,
                    occurred_at=occurred,
                    operation_reference=op.reference,
                    operation_psp_reference=op.psp_reference,
                    decline=op.decline,
                )
        except (KeyError, TypeError, ValueError, AttributeError, PspProtocolError) as exc:
            raise WebhookPayloadError(f"unreadable {typ} event: {exc!r}", connector=self.name) from None
        raise WebhookPayloadError(f"unknown event type {typ!r}", connector=self.name)

    def read_settlement_report(self, raw: bytes) -> SettlementReport:
        return settlement.read(raw)

    def settlement_csv_layout(self, raw: bytes) -> SettlementCsvLayout | None:
        return settlement.layout(raw)

    def parse_settlement_report(self, raw: bytes) -> list[SettlementRow]:
        return list(settlement.read(raw).rows)

    def fetch_settlement_report(self, day: dt.date) -> bytes:
        return self.api.settlement_report(day)
