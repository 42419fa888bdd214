"""What both adapters share: construction from the registry's config, credentials checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from psp_adapters.errors import (
    PspConfigurationError,
    PspProtocolError,
    PspReferenceNotFoundError,
    PspRequestRejectedError,
)
from psp_adapters.http import PspHttp
from psp_adapters.port import (
    DisputeEvidenceRequest,
    DisputeEvidenceResult,
    DisputeResult,
    EvidenceRefusal,
    FeeSchedule,
    Outcome,
    PspReference,
    SettlementCsvLayout,
)

# what the PSPs answer when they refuse evidence (their error `code`): a result, never an error
EVIDENCE_REFUSALS = {r.value: r for r in EvidenceRefusal}


def _fields(schedule: FeeSchedule) -> dict[str, int]:
    return {f: getattr(schedule, f) for f in FeeSchedule.__slots__}


class BaseAdapter:
    name: str
    default_fee_schedule = FeeSchedule()

    def __init__(
        self,
        *,
        name: str,
        options: Mapping[str, Any],
        credentials: Mapping[str, Any],
        http: httpx.Client,
    ) -> None:
        self.name = name
        self.options = dict(options)
        missing = [k for k in ("api_key", "webhook_secret") if not credentials.get(k)]
        if missing:
            raise PspConfigurationError(f"{name}: credentials lack {', '.join(missing)}", connector=name)
        self._api_key = str(credentials["api_key"])
        secret = credentials["webhook_secret"]
        # a list during a secret roll: a webhook signed with any of them is accepted
        self._webhook_secrets = [str(s) for s in secret] if isinstance(secret, list | tuple) else [str(secret)]
        self.webhook_tolerance = int(options.get("webhook_tolerance") or 300)
        # OPTIONS["fees"] (FeeSchedule fields) overrides the provider's list price
        self.fee_schedule = FeeSchedule(**{**_fields(self.default_fee_schedule), **(options.get("fees") or {})})
        self.client = PspHttp(
            connector=name, http=http, base_url=str(options.get("base_url") or ""), headers=self.auth_headers()
        )

    def auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def close(self) -> None:
        self.client.http.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.client.base_url}>"

    @staticmethod
    def _lower(headers: Mapping[str, str]) -> dict[str, str]:
        return {str(k).lower(): str(v) for k, v in headers.items()}

    def _ref(self, ref: PspReference) -> PspReference:
        return ref

    def _looked_up_id(self, found: Any, ref: PspReference) -> str:
        """The PSP's id of the authorization found by our reference (`_psp_id` of each adapter):
        an answer without one is unreadable, an unknown outcome, never a KeyError's 500."""
        if not isinstance(found, str) or not found:
            raise PspProtocolError(f"no id in the lookup of {ref.reference}", connector=self.name)
        return found

    def _dispute(self, data: Mapping[str, Any]) -> DisputeResult:
        """A dispute in this PSP's wire format (the answer of `self.api.get_dispute`, each adapter's client)."""
        raise NotImplementedError

    def inquire_dispute(self, ref: PspReference, psp_dispute_id: str) -> DisputeResult:
        # the id comes from a report: one path segment, never another endpoint
        data = self.api.get_dispute(psp_dispute_id)
        try:
            found = self._dispute(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise PspProtocolError(f"unexpected dispute answer: {exc!r}", connector=self.name) from None
        if found.payment.reference != ref.reference:
            raise PspReferenceNotFoundError(f"dispute {psp_dispute_id} is not on {ref.reference}", connector=self.name)
        return found

    def _evidence(self, data: Mapping[str, Any]) -> tuple[str, DisputeResult]:
        """An evidence answer in this PSP's wire format: (the PSP's id of the submission, the dispute)."""
        raise NotImplementedError

    def submit_dispute_evidence(self, req: DisputeEvidenceRequest) -> DisputeEvidenceResult:
        try:
            data = self.api.submit_dispute_evidence(req.psp_dispute_id, reference=req.reference, text=req.text)
        except PspRequestRejectedError as exc:
            refusal = EVIDENCE_REFUSALS.get(exc.psp_code)
            if refusal is None:
                raise
            return DisputeEvidenceResult(outcome=Outcome.DECLINED, reference=req.reference, refusal=refusal,
                                         message=exc.message)
        try:
            psp_reference, found = self._evidence(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise PspProtocolError(f"unexpected evidence answer: {exc!r}", connector=self.name) from None
        if found.payment.reference != req.payment.reference:
            raise PspReferenceNotFoundError(
                f"dispute {req.psp_dispute_id} is not on {req.payment.reference}", connector=self.name
            )
        return DisputeEvidenceResult(outcome=Outcome.APPROVED, reference=req.reference, psp_reference=psp_reference,
                                     dispute=found)

    def settlement_csv_layout(self, raw: bytes) -> SettlementCsvLayout | None:
        """None: this PSP's reports parse in Python (`read_settlement_report`)."""
        return None
