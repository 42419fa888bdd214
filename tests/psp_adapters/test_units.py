"""Pure parts without network: decline maps, fee schedules, settlement parsing, webhook
signatures, the registry."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from psp_adapters.alpha import settlement as alpha_settlement
from psp_adapters.alpha import webhooks as alpha_webhooks
from psp_adapters.alpha.codes import DECLINE_CODES as ALPHA_CODES
from psp_adapters.beta import settlement as beta_settlement
from psp_adapters.beta import webhooks as beta_webhooks
from psp_adapters.beta.codes import DECLINE_CODES as BETA_CODES
from psp_adapters.codes import decline_for, seed_rows
from psp_adapters.errors import (
    PspConfigurationError,
    SettlementReportError,
    WebhookSignatureError,
)
from psp_adapters.port import DeclineClass, DeclineCode, SettlementKind


def test_decline_maps_are_data_with_a_hard_default():
    assert decline_for(ALPHA_CODES, "96").code == DeclineCode.PROCESSING_ERROR
    assert decline_for(ALPHA_CODES, "96").may_cascade
    assert decline_for(BETA_CODES, "12").code == DeclineCode.INSUFFICIENT_FUNDS
    unknown = decline_for(ALPHA_CODES, "??", "odd")
    assert (unknown.code, unknown.decline_class, unknown.psp_code) == (
        DeclineCode.GENERIC_DECLINE,
        DeclineClass.HARD,
        "??",
    )
    rows = seed_rows()
    assert {"psp": "alpha", "psp_code": "51", "code": "insufficient_funds", "decline_class": "hard"} in rows
    assert {r["psp"] for r in rows} == {"alpha", "beta"}


def test_fee_schedule_scales_fixed_fees_to_the_currency():
    from psp_adapters.port import FeeSchedule

    fees = FeeSchedule(capture_per_mille=14, capture_fixed=25, refund_fixed=10, chargeback_fixed=1500)
    assert fees.fee(SettlementKind.CAPTURE, 1000, "EUR") == 14 + 25
    assert fees.fee(SettlementKind.CAPTURE, 1000, "JPY") == 14
    assert fees.fee(SettlementKind.CAPTURE, 1000, "KWD") == 14 + 250
    assert fees.fee(SettlementKind.REFUND, -500, "EUR") == 10
    assert fees.fee(SettlementKind.CHARGEBACK, -500, "EUR") == 1500
    assert fees.fee(SettlementKind.CHARGEBACK_REVERSAL, 500, "EUR") == 0  # the chargeback fee is not returned


# --- settlement parsing -------------------------------------------------------------------
ALPHA_HEADER = (
    b"record_type,settlement_date,payout_batch,authorization_id,merchant_reference,operation_id,"
    b"operation_reference,currency,gross_minor,fee_minor,net_minor,booked_at\n"
)
ALPHA_REPORT = (
    ALPHA_HEADER
    + b"""\
capture,2026-11-23,PB-20261123-EUR,auth_1,att_1,op_1,cap_1,EUR,1000,39,961,2026-11-23T10:00:00Z
refund,2026-11-23,PB-20261123-EUR,auth_1,att_1,op_2,re_1,EUR,-500,0,-500,2026-11-23T11:00:00Z
capture,2026-11-23,PB-20261123-EUR,auth_2,att_2,op_3,cap_2,EUR,ten,39,961,2026-11-23T10:00:00Z
chargeback,2026-11-23,PB-20261123-JPY,auth_3,att_3,dp_1,,jpy,-1500,0,-1500,2026-11-23T12:00:00Z
chargeback_reversal,2026-11-23,PB-20261123-JPY,auth_3,att_3,dp_1,,JPY,1500,0,1500,2026-11-23T13:00:00Z
refund_reversal,2026-11-23,PB-20261123-EUR,auth_1,att_1,op_2,re_1,EUR,500,0,500,2026-11-23T14:00:00Z
end_of_report,2026-11-23,,,,,,,,,,
"""
)


def test_alpha_report_rows_errors_and_period():
    report = alpha_settlement.read(ALPHA_REPORT)
    assert report.period_start == report.period_end == dt.date(2026, 11, 23)
    assert [(r.kind, r.gross, r.fee, r.net, r.line_number) for r in report.rows] == [
        (SettlementKind.CAPTURE, 1000, 39, 961, 2),
        (SettlementKind.REFUND, -500, 0, -500, 3),
        (SettlementKind.CHARGEBACK, -1500, 0, -1500, 5),
        (SettlementKind.CHARGEBACK_REVERSAL, 1500, 0, 1500, 6),
        (SettlementKind.REFUND_REVERSAL, 500, 0, 500, 7),
    ]
    assert (report.rows[4].operation_reference, report.rows[4].operation_psp_reference) == ("re_1", "op_2")
    assert report.rows[2].currency == "JPY" and report.rows[2].operation_reference is None
    assert report.rows[3].operation_psp_reference == "dp_1" and report.rows[3].operation_reference is None
    assert [(e.line_number, "gross_minor" in e.message) for e in report.errors] == [(4, True)]


def test_alpha_report_with_wrong_columns_is_rejected_whole():
    with pytest.raises(SettlementReportError):
        alpha_settlement.read(b"a,b,c\n1,2,3\n")
    with pytest.raises(SettlementReportError):
        alpha_settlement.read(b"\xff\xfe" + ALPHA_REPORT)


BETA_REPORT = (
    b"Beta Payments Settlement Report\r\nReport Date;23.11.2026\r\nMerchant Account;PayeraSandbox\r\n\r\n"
    b"Batch Number;Booking Date;Record Type;Beta Reference;Modification Reference;Payment Reference;"
    b"Merchant Reference;Currency;Gross;Commission;Net\r\n"
    b"BATCH-20261123;23.11.2026 10:00:00;Settled;BP1;BM1;att_1;cap_1;EUR;10.00;0.19;9.81\r\n"
    b"BATCH-20261123;23.11.2026 10:00:00;Refunded;BP1;BM2;att_1;re_1;KWD;-1.050;0.000;-1.050\r\n"
    b"BATCH-20261123;23.11.2026 10:00:00;Settled;BP2;BM3;att_2;cap_2;EUR;10.001;0.19;9.81\r\n"
    b"BATCH-20261123;23.11.2026 12:00:00;ChargebackReversed;BP1;BD1;att_1;att_1;EUR;10.00;0.00;10.00\r\n"
    b"BATCH-20261123;23.11.2026 13:00:00;RefundReversed;BP1;BM2;att_1;re_1;KWD;1.050;0.000;1.050\r\n"
)


def test_beta_report_rows_errors_and_period():
    report = beta_settlement.read(BETA_REPORT)
    assert report.period_start == dt.date(2026, 11, 23)
    assert [(r.kind, r.gross, r.fee, r.net, r.currency, r.line_number) for r in report.rows] == [
        (SettlementKind.CAPTURE, 1000, 19, 981, "EUR", 6),
        (SettlementKind.REFUND, -1050, 0, -1050, "KWD", 7),
        (SettlementKind.CHARGEBACK_REVERSAL, 1000, 0, 1000, "EUR", 9),
        (SettlementKind.REFUND_REVERSAL, 1050, 0, 1050, "KWD", 10),
    ]
    assert (report.rows[3].operation_reference, report.rows[3].operation_psp_reference) == ("re_1", "BM2")
    assert report.rows[0].operation_reference == "cap_1" and report.rows[0].reference == "att_1"
    assert report.rows[2].operation_psp_reference == "BD1" and report.rows[2].operation_reference is None
    assert [e.line_number for e in report.errors] == [8]


def test_beta_report_without_its_title_is_rejected():
    with pytest.raises(SettlementReportError):
        beta_settlement.read(b"Batch Number;Gross\n1;2\n")


# --- webhook signatures ---------------------------------------------------------------------
def test_alpha_signature_accepts_any_secret_of_a_roll():
    body = json.dumps({"id": "evt_1", "type": "x", "data": {}}).encode()
    headers = {"x-alpha-signature": alpha_webhooks.sign(body, "new")}
    alpha_webhooks.verify(body=body, headers=headers, secrets=["old", "new"])
    with pytest.raises(WebhookSignatureError):
        alpha_webhooks.verify(body=body, headers=headers, secrets=["old"])


def test_beta_signature_checks_timestamp_and_body():
    body = b'{"eventId": "BE1", "eventCode": "AUTHORISATION"}'
    header = beta_webhooks.sign(body, "s", ts=1_800_000_000)
    beta_webhooks.verify(body=body, headers={"beta-signature": header}, secrets=["s"], now=1_800_000_100)
    for headers, now in [
        ({"beta-signature": header}, 1_800_000_301),  # too old
        ({"beta-signature": header.replace("ts=1800000000", "ts=1800000001")}, 1_800_000_000),
        ({"beta-signature": "garbage"}, 1_800_000_000),
        ({}, 1_800_000_000),
    ]:
        with pytest.raises(WebhookSignatureError):
            beta_webhooks.verify(body=body, headers=headers, secrets=["s"], now=now)


# --- registry -------------------------------------------------------------------------------
def test_registry_builds_from_settings_and_secrets(settings):
    from payera.secrets.services import secret_put
    from psp_adapters.registry import adapters_reset, get_adapter

    settings.SECRETS_BACKEND = "memory"
    settings.PSP_CONNECTORS = {
        "alpha": {"ADAPTER": "psp_adapters.alpha.AlphaAdapter", "OPTIONS": {"base_url": "http://127.0.0.1:9"}},
        "nocreds": {"ADAPTER": "psp_adapters.beta.BetaAdapter", "OPTIONS": {"base_url": "http://127.0.0.1:9"}},
    }
    secret_put("psp/alpha", {"api_key": "k", "webhook_secret": "s"})
    adapter = get_adapter("alpha")
    assert adapter is get_adapter("alpha")
    assert adapter.client.http.timeout.read == 10.0 and adapter.client.http.timeout.connect == 2.0
    with pytest.raises(PspConfigurationError):
        get_adapter("nocreds")
    with pytest.raises(PspConfigurationError):
        get_adapter("gamma")
    settings.PSP_CONNECTORS = {"alpha": {**settings.PSP_CONNECTORS["alpha"], "OPTIONS": {"base_url": "http://x"}}}
    assert get_adapter("alpha") is not adapter  # cache cleared on setting_changed
    adapters_reset()


def test_a_cookie_a_psp_sets_is_not_kept_nor_sent_with_the_next_call():
    import httpx

    from psp_adapters.http import PspHttp, build_http_client

    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("cookie")))
        return httpx.Response(200, json={"ok": True}, headers={"set-cookie": "session=merchant-a; Path=/"})

    http = PspHttp(connector="alpha", http=build_http_client({}, transport=httpx.MockTransport(answer)),
                   base_url="https://psp.example/", headers={"Authorization": "Bearer k"})
    assert http.json("POST", "/v1/authorizations", json={"a": 1}) == (200, {"ok": True})
    assert http.json("GET", "/v1/authorizations", params={"merchant_reference": "r"}) == (200, {"ok": True})
    assert http.json("POST", "/v1/authorizations", json={"a": 2}) == (200, {"ok": True})
    assert seen == [("https://psp.example/v1/authorizations", None),
                    ("https://psp.example/v1/authorizations?merchant_reference=r", None),
                    ("https://psp.example/v1/authorizations", None)]
    assert not http.http.cookies
