"""Daily settlement reports, each sandbox in its own CSV format, read from its own storage.

A report covers one UTC day: the captures and refunds that succeeded that day (a refund returned
later included: it did succeed), the chargebacks (disputes, SEPA returns) opened that day, the
reversals of the disputes the merchant won that day (the disputed amount paid back: positive
gross, no fee, since the chargeback fee is not returned; the dispute's id as the operation id) and
the reversals of the refunds returned that day (the shopper's bank sent the refund back: positive
gross, no fee, since the refund fee is not returned; the refund's ids as for its refund row), with gross, fee, net,
currency, the merchant's (Payera's) references, the PSP's references and the payout batch.

alpha: comma-separated, snake_case columns, integer minor units, ISO dates; the last line is
`end_of_report,<date>` so an empty day still says which day it covers.
beta: semicolon-separated, a title block (`Report Date;DD.MM.YYYY`) then a blank line, then
"Title Case" columns, decimal major units ("12.34", "-5.00"), dates DD.MM.YYYY.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
from pathlib import Path
from typing import Any

from psp_adapters.sandbox.money import minor_to_decimal_string

ALPHA_COLUMNS = [
    "record_type", "settlement_date", "payout_batch", "authorization_id", "merchant_reference",
    "operation_id", "operation_reference", "currency", "gross_minor", "fee_minor", "net_minor", "booked_at",
]  # fmt: skip
BETA_COLUMNS = [
    "Batch Number", "Booking Date", "Record Type", "Beta Reference", "Modification Reference",
    "Payment Reference", "Merchant Reference", "Currency", "Gross", "Commission", "Net",
]  # fmt: skip
BETA_TITLE = "Beta Payments Settlement Report"


def entries(path: Path, day: dt.date) -> list[dict[str, Any]]:
    """The day's settled entries, oldest first: kind, refs, gross (signed), fee, currency, at."""
    start = dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()
    end = start + 86400
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        returns = {r["name"] for r in conn.execute("PRAGMA table_info(operations)")} >= {"returned_at"}
        # a refund returned later succeeded all the same: its day lists it (a file from before the
        # sandbox recorded returns has no such refund)
        succeeded = "(o.state = 'succeeded' OR o.returned_at IS NOT NULL)" if returns else "o.state = 'succeeded'"
        ops = conn.execute(
            "SELECT o.*, p.reference AS payment_reference FROM operations o JOIN payments p ON p.id = o.payment_id"  # noqa: S608
            f" WHERE {succeeded} AND o.kind IN ('capture', 'refund')"
            " AND o.completed_at >= ? AND o.completed_at < ?",
            (start, end),
        ).fetchall()
        returned = conn.execute(
            "SELECT o.*, p.reference AS payment_reference FROM operations o JOIN payments p ON p.id = o.payment_id"
            " WHERE o.kind = 'refund' AND o.returned_at >= ? AND o.returned_at < ?",
            (start, end),
        ).fetchall() if returns else []
        disputes = conn.execute(
            "SELECT d.*, p.reference AS payment_reference FROM disputes d JOIN payments p ON p.id = d.payment_id"
            " WHERE d.created_at >= ? AND d.created_at < ?",
            (start, end),
        ).fetchall()
        decided = {r["name"] for r in conn.execute("PRAGMA table_info(disputes)")} >= {"closed_at"}
        won = conn.execute(
            "SELECT d.*, p.reference AS payment_reference FROM disputes d JOIN payments p ON p.id = d.payment_id"
            " WHERE d.status = 'won' AND d.closed_at >= ? AND d.closed_at < ?",
            (start, end),
        ).fetchall() if decided else []  # a file from before the sandbox recorded decisions
    finally:
        conn.close()
    out = []
    for o in ops:
        sign = 1 if o["kind"] == "capture" else -1
        out.append(
            {
                "kind": o["kind"], "payment_id": o["payment_id"], "payment_reference": o["payment_reference"],
                "operation_id": o["id"], "operation_reference": o["reference"], "currency": o["currency"],
                "gross": sign * o["amount"], "fee": o["fee"], "at": o["completed_at"],
            }
        )  # fmt: skip
    for d in disputes:
        out.append(
            {
                "kind": "chargeback", "payment_id": d["payment_id"], "payment_reference": d["payment_reference"],
                "operation_id": d["id"], "operation_reference": "", "currency": d["currency"],
                "gross": -d["amount"], "fee": d["fee"], "at": d["created_at"],
            }
        )  # fmt: skip
    for d in won:  # the merchant won: the disputed amount comes back, the chargeback fee does not
        out.append(
            {
                "kind": "chargeback_reversal", "payment_id": d["payment_id"],
                "payment_reference": d["payment_reference"], "operation_id": d["id"], "operation_reference": "",
                "currency": d["currency"],
                "gross": d["amount"], "fee": 0, "at": d["closed_at"],
            }
        )  # fmt: skip
    for o in returned:  # the shopper's bank sent the refund back: the money is the merchant's again
        out.append(
            {
                "kind": "refund_reversal", "payment_id": o["payment_id"], "payment_reference": o["payment_reference"],
                "operation_id": o["id"], "operation_reference": o["reference"], "currency": o["currency"],
                "gross": o["amount"], "fee": 0, "at": o["returned_at"],
            }
        )  # fmt: skip
    out.sort(key=lambda e: (e["at"], e["operation_id"]))
    return out


def _alpha(day: dt.date, rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(ALPHA_COLUMNS)
    for e in rows:
        at = dt.datetime.fromtimestamp(e["at"], dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        w.writerow(
            [
                e["kind"], day.isoformat(), f"PB-{day:%Y%m%d}-{e['currency']}", e["payment_id"],
                e["payment_reference"], e["operation_id"], e["operation_reference"], e["currency"],
                e["gross"], e["fee"], e["gross"] - e["fee"], at,
            ]
        )  # fmt: skip
    w.writerow(["end_of_report", day.isoformat()] + [""] * (len(ALPHA_COLUMNS) - 2))
    return buf.getvalue().encode()


def _beta(day: dt.date, rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\r\n")
    w.writerow([BETA_TITLE])
    w.writerow(["Report Date", f"{day:%d.%m.%Y}"])
    w.writerow(["Merchant Account", "PayeraSandbox"])
    w.writerow([])
    w.writerow(BETA_COLUMNS)
    record = {"capture": "Settled", "refund": "Refunded", "chargeback": "Chargeback",
              "chargeback_reversal": "ChargebackReversed", "refund_reversal": "RefundReversed"}  # fmt: skip
    for e in rows:
        at = dt.datetime.fromtimestamp(e["at"], dt.UTC)
        cur = e["currency"]
        w.writerow(
            [
                f"BATCH-{day:%Y%m%d}", f"{at:%d.%m.%Y %H:%M:%S}", record[e["kind"]], e["payment_id"],
                e["operation_id"], e["payment_reference"], e["operation_reference"] or e["payment_reference"], cur,
                minor_to_decimal_string(e["gross"], cur), minor_to_decimal_string(e["fee"], cur),
                minor_to_decimal_string(e["gross"] - e["fee"], cur),
            ]
        )  # fmt: skip
    return buf.getvalue().encode("utf-8")


def render(psp: str, path: Path, day: dt.date) -> bytes:
    rows = entries(Path(path), day)
    return _alpha(day, rows) if psp == "alpha" else _beta(day, rows)
