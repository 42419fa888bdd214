"""Beta: an asynchronous PSP. Authorize and modifications answer "received" (PENDING); the
outcome arrives as a signed webhook (`parse_webhook`) and is always visible by `inquire`.
Redirect flows (3-D Secure cards, bank redirect) answer REQUIRES_ACTION at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from payera.core.money import minor_from_decimal_string, minor_to_decimal_string
from psp_adapters.base import BaseAdapter
from psp_adapters.beta import settlement, webhooks
from psp_adapters.beta.client import BetaClient
from psp_adapters.beta.codes import DECLINE_CODES, DISPUTE_REASONS
from psp_adapters.codes import decline_for
from psp_adapters.errors import PaymentMethodUnsupportedError, PspProtocolError, WebhookPayloadError
from psp_adapters.port import (
    AuthorizeRequest,
    AuthorizeResult,
    BankRedirectData,
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
    SepaDebitData,
    SettlementReport,
    SettlementRow,
    StoredCardData,
    VoidRequest,
)

STATES = {
    "received": PspState.PENDING,
    "redirect_shopper": PspState.REQUIRES_ACTION,
    "authorised": PspState.AUTHORIZED,
    "captured": PspState.CAPTURED,
    "cancelled": PspState.VOIDED,
    "refused": PspState.DECLINED,
}
MOD_KINDS = {"capture": OperationKind.CAPTURE, "cancel": OperationKind.VOID, "refund": OperationKind.REFUND}
EVENT_KINDS = {
    "AUTHORISATION": PspEventKind.AUTHORIZATION,
    "CAPTURE": PspEventKind.CAPTURE,
    "CANCELLATION": PspEventKind.VOID,
    "REFUND": PspEventKind.REFUND,
    "CHARGEBACK": PspEventKind.DISPUTE,
}


def _money(data: Any) -> tuple[int, str]:
    currency = str(data["currency"]).upper()
    return minor_from_decimal_string(str(data["value"]), currency), currency


def _decline(code: str | None, reason: str | None) -> Decline:
    return decline_for(DECLINE_CODES, code, reason or "")


def _dispute_info(
    psp_dispute_id: str, reason_code: str | None, status: str | None, due: str | None = None
) -> DisputeInfo:
    """A dispute's facts, as a CHARGEBACK notification and the dispute inquiry both carry them."""
    reason_code = str(reason_code or "")
    return DisputeInfo(
        psp_dispute_id=psp_dispute_id,
        reason=DISPUTE_REASONS.get(reason_code, DisputeReason.GENERAL),
        status=DisputeStatus(status or "needs_response"),
        psp_reason=reason_code,
        evidence_due_by=dt.datetime.fromisoformat(str(due).replace("Z", "+00:00")) if due else None,
    )


def _refused(decline: Decline) -> Outcome:
    return Outcome.SOFT_DECLINED if decline.may_cascade else Outcome.DECLINED


class BetaAdapter(BaseAdapter):
    capabilities = Capabilities(
        payment_methods=frozenset(
            {PaymentMethodType.CARD, PaymentMethodType.BANK_REDIRECT, PaymentMethodType.SEPA_DEBIT}
        ),
        asynchronous=True,
        method_currencies={
            PaymentMethodType.BANK_REDIRECT: frozenset({"EUR"}),
            PaymentMethodType.SEPA_DEBIT: frozenset({"EUR"}),
        },
    )
    default_fee_schedule = FeeSchedule(capture_per_mille=19, refund_fixed=10, chargeback_fixed=1000)

    def auth_headers(self) -> dict[str, str]:
        return {"X-Api-Key": self._api_key, "Accept": "application/json"}

    @property
    def api(self) -> BetaClient:
        return BetaClient(self.client)

    # --- mapping ----------------------------------------------------------------------
    def _modification(self, data: Mapping[str, Any], payment: PspReference | None = None) -> OperationResult:
        status = data.get("status")
        decline = None
        if status == "succeeded":
            outcome = Outcome.APPROVED
        elif status in ("received", "pending"):
            outcome = Outcome.PENDING
        elif status == "failed":
            outcome = Outcome.DECLINED
            decline = _decline(data.get("reasonCode"), data.get("reason"))
        else:
            raise PspProtocolError(f"unknown modification status {status!r}", connector=self.name)
        amount, currency = _money(data["amount"])
        return OperationResult(
            kind=MOD_KINDS[data["type"]],
            outcome=outcome,
            reference=data["reference"],
            psp_reference=data.get("pspReference"),
            payment=payment or PspReference(data["paymentReference"], data["originalReference"]),
            amount=amount,
            currency=currency,
            decline=decline,
            returned=outcome == Outcome.DECLINED and bool(data.get("returnedAt")),
        )

    def _result(self, data: Mapping[str, Any]) -> AuthorizeResult:
        try:
            state = STATES[data["status"]]
            amount, currency = _money(data["amount"])
            decline = None
            outcome = Outcome.APPROVED
            if state == PspState.DECLINED:
                decline = _decline(data.get("refusalReasonCode"), data.get("refusalReason"))
                outcome = _refused(decline)
            elif state == PspState.REQUIRES_ACTION:
                outcome = Outcome.REQUIRES_ACTION
            elif state == PspState.PENDING:
                outcome = Outcome.PENDING
            action = data.get("action") or {}
            ref = PspReference(data["reference"], data["pspReference"])
            return AuthorizeResult(
                outcome=outcome,
                payment=ref,
                state=state,
                amount=amount,
                currency=currency,
                decline=decline,
                action=NextAction(redirect_url=action["url"]) if action.get("url") else None,
                amount_captured=_money(data["capturedAmount"])[0] if data.get("capturedAmount") else 0,
                amount_refunded=_money(data["refundedAmount"])[0] if data.get("refundedAmount") else 0,
                network_transaction_id=data.get("networkTxReference"),
                payment_method_token=data.get("storedPaymentMethodId"),
                operations=tuple(self._modification(m, ref) for m in data.get("modifications") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PspProtocolError(f"unexpected payment answer: {exc!r}", connector=self.name) from None

    def _psp_id(self, ref: PspReference) -> str:
        if ref.psp_reference:
            return ref.psp_reference
        return self._looked_up_id(self.api.find_payment(ref.reference).get("pspReference"), ref)

    # --- the port ---------------------------------------------------------------------
    def authorize(self, req: AuthorizeRequest) -> AuthorizeResult:
        pm = req.payment_method
        currency = req.currency.upper()
        method: dict[str, Any]
        if isinstance(pm, CardData):
            method = {"type": "scheme", "number": pm.number, "expiryMonth": str(pm.exp_month)}
            method["expiryYear"] = str(pm.exp_year)
            if pm.cvc:
                method["cvc"] = pm.cvc
            if pm.holder_name:
                method["holderName"] = pm.holder_name
        elif isinstance(pm, StoredCardData):
            method = {"type": "storedCard", "storedPaymentMethodId": pm.token}
        elif isinstance(pm, BankRedirectData):
            method = {"type": "bankRedirect", "issuer": pm.bank}
        elif isinstance(pm, SepaDebitData):
            method = {"type": "sepadirectdebit", "iban": pm.iban, "ownerName": pm.account_holder_name}
            if pm.mandate_reference:
                method["mandateId"] = pm.mandate_reference
        else:  # pragma: no cover - the union is closed
            raise PaymentMethodUnsupportedError(f"beta does not take {pm!r}", connector=self.name)
        body: dict[str, Any] = {
            "reference": req.reference,
            "amount": {"value": minor_to_decimal_string(req.amount, currency), "currency": currency},
            "paymentMethod": method,
            "captureMode": "immediate" if req.capture else "manual",
            "shopperInteraction": "ContAuth" if req.off_session else "Ecommerce",
            "storePaymentMethod": req.store_payment_method,
            "description": req.description,
            "metadata": dict(req.metadata),
        }
        if req.network_transaction_id:
            body["networkTxReference"] = req.network_transaction_id
        if req.return_url:
            body["returnUrl"] = req.return_url
        if req.shopper_ip:
            body["shopperIP"] = req.shopper_ip
        status, data = self.api.create_payment(body)
        if status == 200:  # an idempotent replay: the authorization exists, report its state
            return self.inquire(PspReference(req.reference, data.get("pspReference")))
        try:
            ref = PspReference(data["reference"], data["pspReference"])
            action = data.get("action") or {}
        except (KeyError, TypeError):
            raise PspProtocolError("unexpected payment answer", connector=self.name) from None
        if action.get("url"):
            outcome, state = Outcome.REQUIRES_ACTION, PspState.REQUIRES_ACTION
        else:
            outcome, state = Outcome.PENDING, PspState.PENDING
        return AuthorizeResult(
            outcome=outcome,
            payment=ref,
            state=state,
            amount=req.amount,
            currency=currency,
            action=NextAction(redirect_url=action["url"]) if action.get("url") else None,
        )

    def complete_authentication(self, ref: PspReference, *, params: Mapping[str, str] | None = None) -> AuthorizeResult:
        # the shopper's return is only a hint: beta's state (and its webhook) is the truth
        return self.inquire(ref)

    def inquire(self, ref: PspReference) -> AuthorizeResult:
        if ref.psp_reference:
            return self._result(self.api.get_payment(ref.psp_reference))
        return self._result(self.api.find_payment(ref.reference))

    def _dispute(self, data: Mapping[str, Any]) -> DisputeResult:
        amount, currency = _money(data["amount"])
        return DisputeResult(
            payment=PspReference(data["paymentReference"], data["originalReference"]),
            dispute=_dispute_info(data["pspReference"], data.get("reasonCode"), data.get("disputeStatus"),
                                  data.get("defenseDueDate")),
            amount=amount,
            currency=currency,
        )

    def _evidence(self, data: Mapping[str, Any]) -> tuple[str, DisputeResult]:
        return str(data["pspReference"]), self._dispute(data["dispute"])

    def _modify(self, payment: PspReference, kind: str, body: dict[str, Any]) -> OperationResult:
        psp_id = self._psp_id(payment)
        data = self.api.modify(psp_id, kind, body)
        try:
            return self._modification(data, PspReference(payment.reference, psp_id))
        except (KeyError, TypeError, ValueError) as exc:
            raise PspProtocolError(f"unexpected modification answer: {exc!r}", connector=self.name) from None

    def capture(self, req: CaptureRequest) -> OperationResult:
        amount = {"value": minor_to_decimal_string(req.amount, req.currency), "currency": req.currency.upper()}
        return self._modify(req.payment, "captures", {"reference": req.reference, "amount": amount})

    def void(self, req: VoidRequest) -> OperationResult:
        return self._modify(req.payment, "cancels", {"reference": req.reference})

    def refund(self, req: RefundRequest) -> OperationResult:
        amount = {"value": minor_to_decimal_string(req.amount, req.currency), "currency": req.currency.upper()}
        return self._modify(req.payment, "refunds", {"reference": req.reference, "amount": amount})

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> PspEvent:
        webhooks.verify(
            body=body, headers=self._lower(headers), secrets=self._webhook_secrets, tolerance=self.webhook_tolerance
        )
        e = webhooks.load(body)
        code = str(e["eventCode"])
        kind = EVENT_KINDS.get(code)
        if kind is None:
            raise WebhookPayloadError(f"unknown eventCode {code!r}", connector=self.name)
        try:
            amount, currency = _money(e["amount"])
            occurred = dt.datetime.fromisoformat(str(e["eventDate"]).replace("Z", "+00:00"))
            success = e.get("success") in (True, "true")
            extra = e.get("additionalData") or {}
            decline = None if success else _decline(e.get("reasonCode"), e.get("reason"))
            common: dict[str, Any] = {
                "event_id": str(e["eventId"]),
                "kind": kind,
                "amount": amount,
                "currency": currency,
                "occurred_at": occurred,
            }
            if kind == PspEventKind.AUTHORIZATION:
                captured = extra.get("capturedAmount")
                return PspEvent(
                    **common,
                    outcome=Outcome.APPROVED if decline is None else _refused(decline),
                    payment=PspReference(e["merchantReference"], e["pspReference"]),
                    decline=decline,
                    amount_captured=minor_from_decimal_string(captured, currency) if captured else 0,
                    network_transaction_id=extra.get("networkTxReference"),
                    payment_method_token=extra.get("storedPaymentMethodId"),
                )
            payment = PspReference(e["paymentReference"], e["originalReference"])
            if kind == PspEventKind.DISPUTE:
                return PspEvent(
                    **common,
                    outcome=Outcome.APPROVED,
                    payment=payment,
                    dispute=_dispute_info(e["pspReference"], e.get("reasonCode"), extra.get("disputeStatus"),
                                          extra.get("defenseDueDate")),
                )
            return PspEvent(
                **common,
                outcome=Outcome.APPROVED if success else Outcome.DECLINED,
                payment=payment,
                operation_reference=e["merchantReference"],
                operation_psp_reference=e["pspReference"],
                decline=decline,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WebhookPayloadError(f"unreadable {code} event: {exc!r}", connector=self.name) from None

    def read_settlement_report(self, raw: bytes) -> SettlementReport:
        return settlement.read(raw)

    def parse_settlement_report(self, raw: bytes) -> list[SettlementRow]:
        return list(settlement.read(raw).rows)

    def fetch_settlement_report(self, day: dt.date) -> bytes:
        return self.api.settlement_report(day)
