"""Beta's settlement report: a title block (`Report Date;DD.MM.YYYY`), a blank line, then
semicolon-separated rows with decimal amounts in major units and DD.MM.YYYY dates."""

from __future__ import annotations

import csv
import datetime as dt
import re

from payera.core.money import UnknownCurrencyError, currency_normalize, minor_from_decimal_string
from psp_adapters.errors import SettlementReportError
from psp_adapters.port import SettlementKind, SettlementReport, SettlementRow, SettlementRowError
from psp_adapters.report_lines import MalformedLineError, physical_lines, split_record

TITLE = "Beta Payments Settlement Report"
COLUMNS = (
    "Batch Number", "Booking Date", "Record Type", "Beta Reference", "Modification Reference",
    "Payment Reference", "Merchant Reference", "Currency", "Gross", "Commission", "Net",
)  # fmt: skip
KINDS = {
    "Settled": SettlementKind.CAPTURE,
    "Refunded": SettlementKind.REFUND,
    "Chargeback": SettlementKind.CHARGEBACK,
    "ChargebackReversed": SettlementKind.CHARGEBACK_REVERSAL,
    "RefundReversed": SettlementKind.REFUND_REVERSAL,
    "Fee": SettlementKind.FEE,
    "Adjustment": SettlementKind.ADJUSTMENT,
}

_DISPUTES = (SettlementKind.CHARGEBACK, SettlementKind.CHARGEBACK_REVERSAL)  # Merchant Reference: the attempt


# a decimal amount in major units: digits, an optional sign and decimal part (no exponent: "1E+2"
# is refused), at most 18 digits in minor units (what alpha's integers allow; fits a bigint)
_AMOUNT = re.compile(r"^[ \t]*[-+]?[0-9]+(\.[0-9]+)?[ \t]*$")
MINOR_LIMIT = 10**18


def _amount(value: str, name: str, currency: str) -> int:
    if not _AMOUNT.match(value):
        raise ValueError(f"{name} is not an amount: {value!r}")
    minor = minor_from_decimal_string(value, currency)
    if abs(minor) >= MINOR_LIMIT:
        raise ValueError(f"{name} is out of range: {value!r}")
    return minor


def _date(value: str) -> dt.date:
    return dt.datetime.strptime(value.strip()[:10], "%d.%m.%Y").date()


def read(raw: bytes) -> SettlementReport:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SettlementReportError(f"not UTF-8: {exc}", connector="beta") from None
    lines = physical_lines(text)  # one record per line: a malformed line is its own row error
    if not lines or lines[0].strip().strip(";") != TITLE:
        raise SettlementReportError("not a beta settlement report (title line missing)", connector="beta")
    report_date: dt.date | None = None
    i = 1
    while i < len(lines) and lines[i].strip():
        key, _, value = lines[i].partition(";")
        if key.strip() == "Report Date":
            try:
                report_date = _date(value)
            except ValueError:
                raise SettlementReportError(f"bad Report Date {value!r}", connector="beta") from None
        i += 1
    try:
        fieldnames = split_record(lines[i + 1], ";") if len(lines) > i + 1 else []
    except MalformedLineError as exc:
        raise SettlementReportError(f"line {i + 2} (the header): {exc}", connector="beta") from None
    missing = [c for c in COLUMNS if c not in fieldnames]
    if missing:
        raise SettlementReportError(f"not a beta settlement report: missing columns {missing}", connector="beta")
    if len(lines) > i + 2 and not text.endswith(("\n", "\r")):
        # beta has no trailer: a download cut short is told only by a last line that has neither
        # its line end nor all its fields (a cut at a line end cannot be told)
        last = next(csv.reader([lines[-1]], delimiter=";"), [])
        if len(last) < len(fieldnames):
            raise SettlementReportError(
                f"line {len(lines)} is cut short ({len(last)} fields, no line end): the file is incomplete",
                connector="beta",
            )
    rows: list[SettlementRow] = []
    errors: list[SettlementRowError] = []
    for index in range(i + 2, len(lines)):
        line = index + 1  # 1-based
        if not lines[index]:
            continue
        try:
            rec = dict(zip(fieldnames, split_record(lines[index], ";"), strict=False))
            kind = KINDS.get((rec.get("Record Type") or "").strip())
            if kind is None:
                raise ValueError(f"unknown Record Type {rec.get('Record Type')!r}")
            try:
                currency = currency_normalize(rec.get("Currency") or "")
            except UnknownCurrencyError:
                raise ValueError(f"unknown currency {rec.get('Currency')!r}") from None
            payment_ref = (rec.get("Payment Reference") or "").strip()
            psp_ref = (rec.get("Beta Reference") or "").strip()
            if not payment_ref or not psp_ref:
                raise ValueError("Payment Reference and Beta Reference are required")
            merchant_ref = (rec.get("Merchant Reference") or "").strip()
            rows.append(
                SettlementRow(
                    kind=kind,
                    reference=payment_ref,
                    psp_reference=psp_ref,
                    gross=_amount(rec.get("Gross") or "", "Gross", currency),
                    fee=_amount(rec.get("Commission") or "", "Commission", currency),
                    net=_amount(rec.get("Net") or "", "Net", currency),
                    currency=currency,
                    settled_on=_date(rec.get("Booking Date") or ""),
                    payout_batch_id=(rec.get("Batch Number") or "").strip(),
                    operation_reference=None if kind in _DISPUTES else (merchant_ref or None),
                    operation_psp_reference=(rec.get("Modification Reference") or "").strip() or None,
                    line_number=line,
                )
            )
        except (ValueError, TypeError, AttributeError) as exc:
            errors.append(SettlementRowError(line_number=line, message=str(exc), raw=lines[index]))
    dates = {r.settled_on for r in rows}
    start = report_date or (min(dates) if dates else None)
    end = report_date or (max(dates) if dates else None)
    return SettlementReport(psp="beta", period_start=start, period_end=end, rows=tuple(rows), errors=tuple(errors))
