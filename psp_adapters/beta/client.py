"""Beta's HTTP endpoints (see psp_adapters/sandbox/beta.py for the wire format)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from psp_adapters.http import PspHttp, segment


class BetaClient:
    def __init__(self, http: PspHttp) -> None:
        self.http = http

    def create_payment(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.http.json("POST", "/api/payments", json=body, idempotency_key=body["reference"])

    def get_payment(self, psp_reference: str) -> dict[str, Any]:
        return self.http.json("GET", f"/api/payments/{segment(psp_reference)}")[1]

    def find_payment(self, reference: str) -> dict[str, Any]:
        return self.http.json("GET", "/api/payments", params={"reference": reference})[1]

    def modify(self, psp_reference: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/api/payments/{segment(psp_reference)}/{kind}"
        return self.http.json("POST", path, json=body, idempotency_key=body["reference"])[1]

    def get_dispute(self, psp_reference: str) -> dict[str, Any]:
        return self.http.json("GET", f"/api/disputes/{segment(psp_reference)}")[1]

    def submit_dispute_evidence(self, psp_reference: str, *, reference: str, text: str) -> dict[str, Any]:
        path = f"/api/disputes/{segment(psp_reference)}/defense"
        body = {"reference": reference, "defenseText": text}
        return self.http.json("POST", path, json=body, idempotency_key=reference)[1]

    def settlement_report(self, day: dt.date) -> bytes:
        return self.http.send("GET", "/api/reports/settlement", params={"date": day.isoformat()}).content
