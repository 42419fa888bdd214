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
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise SettlementReportError(f"not an alpha settlement report: missing columns {missing}", connector="alpha")
    (i_kind, i_day, i_batch, i_auth, i_ref, i_op, i_opref, i_cur, i_gross, i_fee, i_net) = (
        header.index(c) for c in COLUMNS
    )
    width = len(header)
    rows: list[SettlementRow] = []
    errors: list[SettlementRowError] = []
    period: dt.date | None = None
    dates: set[dt.date] = set()
    days: dict[str, dt.date] = {}  # a report has a handful of distinct dates and currencies:
    currencies: dict[str, str] = {}  # parse each once (a million rows in a few seconds)
    for rec in reader:
        line = reader.line_num
        if not rec:
            continue
        try:
            if len(rec) < width:
                raise ValueError(f"{len(rec)} fields, expected {width}")
            kind_raw = rec[i_kind].strip()
            day_raw = rec[i_day].strip()
            day = days.get(day_raw)
            if day is None:
                day = days[day_raw] = dt.date.fromisoformat(day_raw)
            if kind_raw == "end_of_report":
                period = day
                continue
            kind = KINDS.get(kind_raw)
            if kind is None:
                raise ValueError(f"unknown record_type {kind_raw!r}")
            reference, psp_reference = rec[i_ref].strip(), rec[i_auth].strip()
            if not reference or not psp_reference:
                raise ValueError("merchant_reference and authorization_id are required")
            cur_raw = rec[i_cur]
            currency = currencies.get(cur_raw)
            if currency is None:
                try:
                    currency = currencies[cur_raw] = currency_normalize(cur_raw)
                except UnknownCurrencyError:
                    raise ValueError(f"unknown currency {cur_raw!r}") from None
            rows.append(
                SettlementRow(
                    kind=kind,
                    reference=reference,
                    psp_reference=psp_reference,
                    gross=_int(rec[i_gross], "gross_minor"),
                    fee=_int(rec[i_fee], "fee_minor"),
                    net=_int(rec[i_net], "net_minor"),
                    currency=currency,
                    settled_on=day,
                    payout_batch_id=rec[i_batch].strip(),
                    operation_reference=rec[i_opref].strip() or None,
                    operation_psp_reference=rec[i_op].strip() or None,
                    line_number=line,
                )
            )
            dates.add(day)
        except (ValueError, TypeError, AttributeError) as exc:
            errors.append(SettlementRowError(line_number=line, message=str(exc), raw=",".join(rec)))
    start = period or (min(dates) if dates else None)
    end = period or (max(dates) if dates else None)
    return SettlementReport(psp="alpha", period_start=start, period_end=end, rows=tuple(rows), errors=tuple(errors))
