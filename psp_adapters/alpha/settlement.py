"""Alpha's settlement report: comma-separated, integer minor units, ISO dates, one report per
day ending with `end_of_report,<date>`. The trailer is the last line: a file without it (a
download cut short) or with records after it is refused whole."""

from __future__ import annotations

import datetime as dt
import re

from payera.core.money import UnknownCurrencyError, currency_normalize
from psp_adapters.errors import SettlementReportError
from psp_adapters.port import (
    SETTLEMENT_INTEGER_MAX_LENGTH,
    SETTLEMENT_INTEGER_PATTERN,
    SettlementCsvLayout,
    SettlementKind,
    SettlementReport,
    SettlementRow,
    SettlementRowError,
)
from psp_adapters.report_lines import MalformedLineError, physical_lines, split_record

COLUMNS = (
    "record_type", "settlement_date", "payout_batch", "authorization_id", "merchant_reference",
    "operation_id", "operation_reference", "currency", "gross_minor", "fee_minor", "net_minor",
)  # fmt: skip
KINDS = {
    "capture": SettlementKind.CAPTURE,
    "refund": SettlementKind.REFUND,
    "chargeback": SettlementKind.CHARGEBACK,
    "chargeback_reversal": SettlementKind.CHARGEBACK_REVERSAL,
    "refund_reversal": SettlementKind.REFUND_REVERSAL,
    "fee": SettlementKind.FEE,
    "adjustment": SettlementKind.ADJUSTMENT,
}


_INT = re.compile(SETTLEMENT_INTEGER_PATTERN)
AMOUNTS = {"gross": "gross_minor", "fee": "fee_minor", "net": "net_minor"}
REQUIRED = "merchant_reference and authorization_id are required"
TRAILER = "end_of_report"
NO_TRAILER = "no end_of_report trailer as its last line: the file is incomplete (cut short?)"
# SettlementRow field -> alpha's column
FIELDS = {
    "kind": "record_type", "settled_on": "settlement_date", "payout_batch_id": "payout_batch",
    "psp_reference": "authorization_id", "reference": "merchant_reference", "operation_psp_reference": "operation_id",
    "operation_reference": "operation_reference", "currency": "currency", **AMOUNTS,
}  # fmt: skip


def _int(value: str, name: str) -> int:
    # the same rule as the SQL that checks a file PostgreSQL parsed
    if not isinstance(value, str) or len(value) > SETTLEMENT_INTEGER_MAX_LENGTH or not _INT.match(value):
        raise ValueError(f"{name} is not an integer: {value!r}")
    return int(value)


def value(field: str, raw: str):
    """Alpha's rule for one field's raw text (ValueError: the line's message); the Python parser
    and the database's parsing of the same file (`layout`) share it."""
    if field == "settled_on":
        return dt.date.fromisoformat(raw.strip())
    if field == "kind":
        kind = KINDS.get(raw.strip())
        if kind is None:
            raise ValueError(f"unknown record_type {raw.strip()!r}")
        return kind
    if field == "currency":
        try:
            return currency_normalize(raw)
        except UnknownCurrencyError:
            raise ValueError(f"unknown currency {raw!r}") from None
    if field in AMOUNTS:
        return _int(raw, AMOUNTS[field])
    return raw.strip()


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SettlementReportError(f"not UTF-8: {exc}", connector="alpha") from None


def _check_header(header: list[str]) -> None:
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise SettlementReportError(f"not an alpha settlement report: missing columns {missing}", connector="alpha")


def layout(raw: bytes) -> SettlementCsvLayout | None:
    """The file checked as a whole (as `read` does) and its record lines described for the
    database to parse; None for a file that is not plain CSV (quoted fields, blank lines, a
    trailer anywhere but last, an unreadable trailer date): `read` parses those, line by line."""
    _text(raw)  # the encoding, checked whole (the text itself is not needed: bytes below)
    if b'"' in raw or b"\r" in raw:
        return None
    start = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    end = raw.find(b"\n", start)
    end = len(raw) if end < 0 else end
    header = raw[start:end].decode().split(",")
    _check_header(header)
    body = memoryview(raw)[end + 1 :] if end < len(raw) else memoryview(b"")
    stop = len(body)
    while stop and body[stop - 1] == ord("\n"):
        stop -= 1
    last_start = raw.rfind(b"\n", end + 1, end + 1 + stop) + 1 if stop else end + 1
    last = raw[max(last_start, end + 1) : end + 1 + stop]
    period = None
    if TRAILER.encode() not in last:
        raise SettlementReportError(NO_TRAILER, connector="alpha")
    if last.startswith(TRAILER.encode() + b","):
        try:
            period = value("settled_on", last.decode().split(",")[header.index("settlement_date")])
        except (ValueError, IndexError):
            return None
        stop = max(0, last_start - (end + 1) - 1)
    else:  # a trailer of another shape: `read` judges the file
        return None
    records = bytes(body[:stop])
    if b"\n\n" in records or records.startswith(b"\n") or TRAILER.encode() in records:
        return None
    return SettlementCsvLayout(
        body=records + b"\n" if records else b"",
        first_line=2,
        delimiter=",",
        width=len(header),
        columns={f: header.index(c) for f, c in FIELDS.items()},
        value=value,
        required_message=REQUIRED,
        period_start=period,
        period_end=period,
    )


def read(raw: bytes) -> SettlementReport:
    """The Python parser: one record per line (`report_lines`), so a malformed line (a stray quote,
    a stray CR) is that line's row error; LF, CRLF or CR-only line ends."""
    lines = physical_lines(_text(raw))
    try:
        header = split_record(lines[0], ",") if lines else []
    except MalformedLineError as exc:
        raise SettlementReportError(f"line 1 (the header): {exc}", connector="alpha") from None
    _check_header(header)
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
    trailer = 0  # its line number
    for line, text in enumerate(lines[1:], start=2):
        if not text:
            continue
        if trailer:
            raise SettlementReportError(f"line {line}: a record after the end_of_report trailer (line {trailer})",
                                        connector="alpha")  # fmt: skip
        try:
            rec = split_record(text, ",")
        except MalformedLineError as exc:
            errors.append(SettlementRowError(line_number=line, message=str(exc)))
            continue
        if len(rec) > max(i_kind, i_day) and rec[i_kind].strip() == TRAILER:
            try:
                period = dt.date.fromisoformat(rec[i_day].strip())
            except ValueError:
                raise SettlementReportError(f"line {line}: end_of_report without a valid date {rec[i_day]!r}",
                                            connector="alpha") from None  # fmt: skip
            trailer = line
            continue
        try:
            if len(rec) < width:
                raise ValueError(f"{len(rec)} fields, expected {width}")
            kind_raw = rec[i_kind].strip()
            day_raw = rec[i_day].strip()
            day = days.get(day_raw)
            if day is None:
                day = days[day_raw] = dt.date.fromisoformat(day_raw)
            kind = KINDS.get(kind_raw)
            if kind is None:
                raise ValueError(f"unknown record_type {kind_raw!r}")
            reference, psp_reference = rec[i_ref].strip(), rec[i_auth].strip()
            if not reference or not psp_reference:
                raise ValueError(REQUIRED)
            cur_raw = rec[i_cur]
            currency = currencies.get(cur_raw)
            if currency is None:
                currency = currencies[cur_raw] = value("currency", cur_raw)
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
    if not trailer:
        raise SettlementReportError(NO_TRAILER, connector="alpha")
    start = period or (min(dates) if dates else None)
    end = period or (max(dates) if dates else None)
    return SettlementReport(psp="alpha", period_start=start, period_end=end, rows=tuple(rows), errors=tuple(errors))
