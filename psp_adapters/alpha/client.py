"""Alpha's HTTP endpoints (see psp_adapters/sandbox/alpha.py for the wire format)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from psp_adapters.http import PspHttp, segment


class AlphaClient:
    def __init__(self, http: PspHttp) -> None:
        self.http = http

    def create_authorization(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.http.json("POST", "/v1/authorizations", json=body, idempotency_key=body["merchant_reference"])

    def get_authorization(self, authorization_id: str) -> dict[str, Any]:
        return self.http.json("GET", f"/v1/authorizations/{segment(authorization_id)}")[1]

    def find_authorization(self, merchant_reference: str) -> dict[str, Any]:
        return self.http.json("GET", "/v1/authorizations", params={"merchant_reference": merchant_reference})[1]

    def operation(self, authorization_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/v1/authorizations/{segment(authorization_id)}/{action}"
        return self.http.json("POST", path, json=body, idempotency_key=body["merchant_reference"])[1]

    def get_dispute(self, dispute_id: str) -> dict[str, Any]:
        return self.http.json("GET", f"/v1/disputes/{segment(dispute_id)}")[1]

    def submit_dispute_evidence(self, dispute_id: str, *, reference: str, text: str) -> dict[str, Any]:
        path = f"/v1/disputes/{segment(dispute_id)}/evidence"
        body = {"merchant_reference": reference, "text": text}
        return self.http.json("POST", path, json=body, idempotency_key=reference)[1]

    def settlement_report(self, day: dt.date) -> bytes:
        return self.http.send("GET", f"/v1/settlement-reports/{day.isoformat()}").content
