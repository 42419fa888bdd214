"""Alpha's settlement report: comma-separated, integer minor units, ISO dates, one report per
day ending with `end_of_report,<date>`."""

from __future__ import annotations

import csv
import datetime as dt
import io

from payera.core.money import UnknownCurrencyError, currency_normalize
from psp_adapters.errors import SettlementReportError
from psp_adapters.port import SettlementKind, SettlementReport, SettlementRow, SettlementRowError

COLUMNS = (
    "record_type", "settlement_date", "payout_batch", "authorization_id", "merchant_reference",
    "operation_id", "operation_reference", "currency", "gross_minor", "fee_minor", "net_minor",
)  # fmt: skip
KINDS = {
    "capture": SettlementKind.CAPTURE,
    "refund": SettlementKind.REFUND,
    "chargeback": SettlementKind.CHARGEBACK,
    "fee": SettlementKind.FEE,
    "adjustment": SettlementKind.ADJUSTMENT,
}


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not an integer: {value!r}") from None


def read(raw: bytes) -> SettlementReport:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SettlementReportError(f"not UTF-8: {exc}", connector="alpha") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise SettlementReportError(f"not an alpha settlement report: missing columns {missing}", connector="alpha")
    rows: list[SettlementRow] = []
    errors: list[SettlementRowError] = []
    period: dt.date | None = None
    dates: set[dt.date] = set()
    for rec in reader:
        line = reader.line_num
        try:
            kind_raw = (rec.get("record_type") or "").strip()
            day = dt.date.fromisoformat((rec.get("settlement_date") or "").strip())
            if kind_raw == "end_of_report":
                period = day
                continue
            if kind_raw not in KINDS:
                raise ValueError(f"unknown record_type {kind_raw!r}")
            if not rec.get("merchant_reference") or not rec.get("authorization_id"):
                raise ValueError("merchant_reference and authorization_id are required")
            try:
                currency = currency_normalize(rec.get("currency") or "")
            except UnknownCurrencyError:
                raise ValueError(f"unknown currency {rec.get('currency')!r}") from None
            rows.append(
                SettlementRow(
                    kind=KINDS[kind_raw],
                    reference=rec["merchant_reference"].strip(),
                    psp_reference=rec["authorization_id"].strip(),
                    gross=_int(rec["gross_minor"], "gross_minor"),
                    fee=_int(rec["fee_minor"], "fee_minor"),
                    net=_int(rec["net_minor"], "net_minor"),
                    currency=currency,
                    settled_on=day,
                    payout_batch_id=(rec.get("payout_batch") or "").strip(),
                    operation_reference=(rec.get("operation_reference") or "").strip() or None,
                    operation_psp_reference=(rec.get("operation_id") or "").strip() or None,
                    line_number=line,
                )
            )
            dates.add(day)
        except (ValueError, TypeError, AttributeError) as exc:
            errors.append(SettlementRowError(line_number=line, message=str(exc), raw=",".join(map(str, rec.values()))))
    start = period or (min(dates) if dates else None)
    end = period or (max(dates) if dates else None)
    return SettlementReport(psp="alpha", period_start=start, period_end=end, rows=tuple(rows), errors=tuple(errors))
