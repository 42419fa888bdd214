# ruff: noqa: S608  (identifiers are this module's TEMP tables and column positions; values are bound)
"""PostgreSQL parses a settlement report itself (docs/reconciliation.md, "Load").

The adapter checks the file as a whole and describes its record lines (`SettlementCsvLayout`);
here they go into a TEMP table of text columns by `COPY ... (FORMAT csv)` (parsed in C, a line
number from an identity column), and one INSERT ... SELECT casts them into the typed staging
table, checking each row by the adapter's rules in SQL: the few distinct record types, dates and
currencies are judged by the adapter's own Python (`layout.value`), amounts by a pattern. A row
that fails is not staged and is reported with its line number, as the Python parser would. A file
COPY refuses (a line with too few or too many fields, a stray quote) raises `CopyRefusedError`
before anything is staged: the importer then parses it in Python.

A clean file (ASCII, nothing in it that a trim would remove) whose few distinct record types,
dates and currencies all pass, with both references present and no amount longer than the rule
allows, is not staged at all: `CopyParsed.source` is a SELECT of the typed rows straight from the
COPY (amounts cast by PostgreSQL's own integer input, which then accepts exactly what the pattern
does), and the match reads it. Should a cast fail there (an amount that is not an integer), the
importer stages the file with `stage_typed`, which lists that row's error with its line number.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.db import DatabaseError, connection, transaction

from psp_adapters.port import (
    SETTLEMENT_INTEGER_MAX_LENGTH,
    SETTLEMENT_INTEGER_PATTERN,
    SettlementCsvLayout,
    SettlementKind,
)
from reconciliation.models import StatementLine

RAW = "recon_raw"  # TEMP: connection-private, no WAL
# a clean file's `source` also names each row's position in the COPY (1, 2, ... in file order, no
# gaps: the identity column of the COPY's table), so the match numbers the lines' ids without a window
COPY_POSITION = "copy_position"
COPY_BYTES = 8 << 20  # one COPY (and one progress commit) per ~8 MB of lines
_WS = "chr(32) || chr(9) || chr(11) || chr(12)"  # what str.strip() removes inside a CSV field
_TYPED = ("kind", "settled_on", "currency")  # judged per distinct value by the adapter's Python
_AMOUNTS = ("gross", "fee", "net")
_TEXTS = ("reference", "psp_reference", "operation_reference", "operation_psp_reference", "payout_batch_id")


def _line_text(name: str) -> str:
    """A statement line's text column as its staging column: the model's width, so the two never
    drift apart (a record type wider than the stage was refused before its line)."""
    return f"varchar({StatementLine._meta.get_field(name).max_length})"


# the staging table (TEMP, reconcile._stage_create): its columns are the statement lines' own
STAGE_COLUMNS = (
    ("line_number", "integer"), ("row_key", _line_text("row_key")), ("kind", _line_text("kind")),
    ("reference", _line_text("reference")), ("psp_reference", _line_text("psp_reference")),
    ("operation_reference", _line_text("operation_reference")),
    ("operation_psp_reference", _line_text("operation_psp_reference")), ("gross", "bigint"), ("fee", "bigint"),
    ("net", "bigint"), ("currency", _line_text("currency")), ("settled_on", "date"),
    ("payout_batch_id", _line_text("payout_batch_id")),
)  # fmt: skip
STAGE_NAMES = tuple(name for name, _ in STAGE_COLUMNS)
# its text widths: a longer text is truncated to them when staged
WIDTHS = {name: int(kind[len("varchar("):-1]) for name, kind in STAGE_COLUMNS if kind.startswith("varchar(")}
# the bytes str.strip() removes that may stand inside an unquoted CSV field of an ASCII file (CR and
# LF cannot: a file with CR gets no layout, LF ends a record); a file without any needs no trims,
# and PostgreSQL's integer input accepts then exactly SETTLEMENT_INTEGER_PATTERN (up to the length)
_PADDING = (b" ", b"\t", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f")


class CopyRefusedError(Exception):
    """PostgreSQL would not read the file as its layout says: parse it in Python instead."""


@dataclass(frozen=True, slots=True)
class CopyParsed:
    rows: int  # staged
    errors: tuple[tuple[int, str], ...]  # (line number, message), in line order
    currencies: frozenset[str]
    period_start: dt.date | None
    period_end: dt.date | None
    # a clean file is not staged: the typed rows as a SELECT over the COPY's TEMP table (with its
    # parameters), columns named as the stage's; None when the rows were staged
    source: str | None = None
    source_params: tuple = ()
    kinds: frozenset[str] = frozenset()  # the record types of a file that was not staged


def _clean(body: bytes) -> bool:
    """Nothing in the file that a trim of a field would remove (memchr scans of the bytes)."""
    return body.isascii() and not any(b in body for b in _PADDING)


def copy_parse(
    *, psp: str, layout: SettlementCsvLayout, stage: str, on_chunk: Callable[[int], None]
) -> CopyParsed:
    """COPY the layout's lines into a TEMP text table (one transaction per chunk, `on_chunk(lines
    so far)` inside it), then stage the rows that pass the checks into `stage`."""
    cols = [f"c{i}" for i in range(layout.width)]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RAW}")
        texts = ", ".join(f"{c} text" for c in cols)
        cursor.execute(f"CREATE TEMP TABLE {RAW} (n bigint GENERATED ALWAYS AS IDENTITY, {texts})")
    body = memoryview(layout.body)
    delimiter = layout.delimiter.replace("'", "''")
    copy_sql = f"COPY {RAW} ({', '.join(cols)}) FROM STDIN (FORMAT csv, DELIMITER '{delimiter}')"
    start = lines = 0
    from psycopg import Error as PsycopgError  # COPY runs on psycopg's own cursor: its errors are not Django's

    try:
        while start < len(body):
            end = layout.body.find(b"\n", start + COPY_BYTES)
            end = len(body) if end < 0 else end + 1
            with transaction.atomic(durable=True), connection.cursor() as cursor:
                with cursor.cursor.copy(copy_sql) as copy:
                    copy.write(body[start:end])
                lines += layout.body.count(b"\n", start, end)
                on_chunk(lines)
            start = end
    except (DatabaseError, PsycopgError) as exc:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {RAW}")
        raise CopyRefusedError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '256MB'")
        if _clean(layout.body):
            parsed = _source(cursor, psp=psp, layout=layout, lines=lines)
            if parsed is not None:  # the match reads the COPY's table itself (and drops it)
                return parsed
        parsed = _stage(cursor, psp=psp, layout=layout, stage=stage, lines=lines)
        cursor.execute(f"DROP TABLE {RAW}")
    return parsed


def stage_typed(*, psp: str, layout: SettlementCsvLayout, stage: str) -> CopyParsed:
    """Stage a file whose `source` the match could not read (an amount PostgreSQL would not cast):
    the rows that pass into `stage`, the others listed with their line numbers."""
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute(f"SELECT COUNT(*) FROM {RAW}")
        parsed = _stage(cursor, psp=psp, layout=layout, stage=stage, lines=int(cursor.fetchone()[0]))
        cursor.execute(f"DROP TABLE {RAW}")
    return parsed


def raw_drop() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RAW}")


def _mapped(column: str, items: dict[str, tuple[object, str | None]], *, cast: str = "") -> tuple[str, list]:
    """SQL for a judged field: the column itself when the adapter's rule keeps every distinct value
    as it is (the usual case), else a CASE over the few distinct values."""
    text = {raw: (val.isoformat() if isinstance(val, dt.date) else str(val)) for raw, (val, _) in items.items()}
    if all(text[raw] == raw for raw in items):
        return (f"{column}{cast}", [])
    whens, params = [], []
    for raw in items:
        whens.append(f"WHEN %s THEN %s{cast}")
        params += [raw, text[raw]]
    return (f"(CASE {column} {' '.join(whens)} END)", params)


def _source(cursor, *, psp: str, layout: SettlementCsvLayout, lines: int) -> CopyParsed | None:
    """A clean file's typed rows as a SELECT over the COPY's table, when one scan of it finds no
    row error that a cast would not catch; None otherwise (the file is staged as usual)."""
    c = {f: f"r.c{i}" for f, i in layout.columns.items()}
    typed = ", ".join(_col(layout, f) for f in _TYPED)
    op_psp = f"COALESCE({c['operation_psp_reference']}, {c['psp_reference']})"  # COPY reads an empty field as NULL
    # a row key of the longest record type still fits its column
    key_room = WIDTHS["row_key"] - len(psp) - 2 - max(len(k.value) for k in SettlementKind)
    # the file is ASCII (_clean): its texts' lengths in bytes are their lengths in characters, and
    # octet_length() reads a header where length() counts the UTF-8 characters of each field
    suspect = " OR ".join(
        [f"{c['reference']} IS NULL", f"{c['psp_reference']} IS NULL"]
        + [f"{c[f]} IS NULL OR octet_length({c[f]}) > {SETTLEMENT_INTEGER_MAX_LENGTH}" for f in _AMOUNTS]
        # a text longer than its column: the stage truncates it (no truncation here)
        + [f"octet_length({c[f]}) > {WIDTHS[f]}" for f in _TEXTS]
        + [f"octet_length({op_psp}) > {key_room}"]
    )
    cursor.execute(f"SELECT {typed}, bool_or({suspect}) FROM {RAW} r GROUP BY 1, 2, 3")
    judged: dict[str, dict[str, tuple[object, str | None]]] = {f: {} for f in _TYPED}
    for *values, bad in cursor.fetchall():
        if bad:
            return None
        for f, raw in zip(_TYPED, values, strict=True):
            if raw not in judged[f]:
                try:
                    judged[f][raw] = (layout.value(f, raw), None)
                except (ValueError, TypeError):
                    return None
    if not lines:
        return None
    kind, kind_params = _mapped(c["kind"], judged["kind"])
    day, day_params = _mapped(c["settled_on"], judged["settled_on"], cast="::date")
    currency, currency_params = _mapped(c["currency"], judged["currency"])
    source = f"""(SELECT r.n AS {COPY_POSITION}, r.n + %s AS line_number,
       %s || ':' || {kind} || ':' || {op_psp} AS row_key,
       {kind} AS kind, {c['reference']} AS reference, {c['psp_reference']} AS psp_reference,
       {_col(layout, 'operation_reference')} AS operation_reference,
       {_col(layout, 'operation_psp_reference')} AS operation_psp_reference,
       {c['gross']}::bigint AS gross, {c['fee']}::bigint AS fee, {c['net']}::bigint AS net, {currency} AS currency,
       {day} AS settled_on, {_col(layout, 'payout_batch_id')} AS payout_batch_id
  FROM {RAW} r)"""
    params = (layout.first_line - 1, psp, *kind_params, *kind_params, *currency_params, *day_params)
    days = [v for v, _ in judged["settled_on"].values()]
    period_start = layout.period_start if layout.period_start is not None else min(days)  # type: ignore[type-var]
    period_end = layout.period_end if layout.period_start is not None else max(days)  # type: ignore[type-var]
    currencies = frozenset(str(v) for v, _ in judged["currency"].values())
    kinds = frozenset(str(v) for v, _ in judged["kind"].values())
    return CopyParsed(lines, (), currencies, period_start, period_end, source, params, kinds)  # type: ignore[arg-type]


def _col(layout: SettlementCsvLayout, field: str) -> str:
    return f"COALESCE(r.c{layout.columns[field]}, '')"


def _judge(cursor, layout: SettlementCsvLayout) -> dict[str, dict[str, tuple[object, str | None]]]:
    """field -> raw text -> (value, error message) for the distinct kinds, dates and currencies."""
    cursor.execute(f"SELECT DISTINCT {', '.join(_col(layout, f) for f in _TYPED)} FROM {RAW} r")
    seen: dict[str, set[str]] = {f: set() for f in _TYPED}
    for values in cursor.fetchall():
        for f, raw in zip(_TYPED, values, strict=True):
            seen[f].add(raw)
    judged: dict[str, dict[str, tuple[object, str | None]]] = {}
    for f, raws in seen.items():
        judged[f] = {}
        for raw in raws:
            try:
                judged[f][raw] = (layout.value(f, raw), None)
            except (ValueError, TypeError) as exc:
                judged[f][raw] = (None, str(exc))
    return judged


def _stage(cursor, *, psp: str, layout: SettlementCsvLayout, stage: str, lines: int) -> CopyParsed:
    judged = _judge(cursor, layout)
    joins, params = [], []
    for alias, f, cast in (("k", "kind", "text"), ("d", "settled_on", "date"), ("y", "currency", "text")):
        items = judged[f]
        raws = list(items)
        joins.append(
            f"LEFT JOIN unnest(%s::text[], %s::{cast}[], %s::text[]) AS {alias}(raw, val, err)"
            f" ON {alias}.raw = {_col(layout, f)}"
        )
        vals = [None if items[r][0] is None else str(items[r][0]) if f != "settled_on" else items[r][0] for r in raws]
        params += [raws, vals, [items[r][1] for r in raws]]
    s = {f: f"btrim({_col(layout, f)}, {_WS})" for f in layout.columns}
    amount_bad = _amount_bad(layout)
    # one regular expression over the three amounts (a third of the cost); which one is wrong
    # is asked only when that fails
    amounts = " || '|' || ".join(_col(layout, f) for f in _AMOUNTS)
    which = "CASE " + "".join(f"WHEN {amount_bad[f]} THEN '{f}' " for f in _AMOUNTS[:-1]) + f"ELSE '{_AMOUNTS[-1]}' END"
    error = (
        "CASE WHEN d.err IS NOT NULL THEN d.err WHEN k.err IS NOT NULL THEN k.err"
        f" WHEN {s['reference']} = '' OR {s['psp_reference']} = '' THEN %s"
        f" WHEN y.err IS NOT NULL THEN y.err WHEN ({amounts}) !~ %s"
        f" OR GREATEST({', '.join(f'length({_col(layout, f)})' for f in _AMOUNTS)}) > {SETTLEMENT_INTEGER_MAX_LENGTH}"
        f" THEN {which} END"
    )
    inner = SETTLEMENT_INTEGER_PATTERN.removeprefix("^").removesuffix("$")
    error_params = [
        layout.required_message, "^" + "\\|".join([inner] * len(_AMOUNTS)) + "$",
        *([SETTLEMENT_INTEGER_PATTERN] * (len(_AMOUNTS) - 1)),
    ]  # fmt: skip
    source = f"FROM {RAW} r {' '.join(joins)}"
    op_psp = f"COALESCE(NULLIF({s['operation_psp_reference']}, ''), {s['psp_reference']})"
    w = WIDTHS
    cursor.execute(
        f"""
INSERT INTO {stage} (line_number, row_key, kind, reference, psp_reference, operation_reference,
                     operation_psp_reference, gross, fee, net, currency, settled_on, payout_batch_id)
SELECT r.n + %s, left(%s || ':' || k.val || ':' || {op_psp}, {w['row_key']}), k.val,
       left({s['reference']}, {w['reference']}), left({s['psp_reference']}, {w['psp_reference']}),
       left({s['operation_reference']}, {w['operation_reference']}),
       left({s['operation_psp_reference']}, {w['operation_psp_reference']}),
       {s['gross']}::bigint, {s['fee']}::bigint, {s['net']}::bigint, y.val, d.val,
       left({s['payout_batch_id']}, {w['payout_batch_id']})
{source} WHERE ({error}) IS NULL""",
        [layout.first_line - 1, psp, *params, *error_params],
    )
    rows = cursor.rowcount
    errors: list[tuple[int, str]] = []
    if rows < lines:  # some rows failed a check: which, and why (a second pass only then)
        errors = _errors(cursor, layout, error=error, error_params=error_params, source=source, params=params)
    period_start, period_end = layout.period_start, layout.period_end
    if period_start is None:
        cursor.execute(f"SELECT MIN(settled_on), MAX(settled_on) FROM {stage}")
        period_start, period_end = cursor.fetchone()
    currencies = frozenset(str(v) for v, err in judged["currency"].values() if err is None)
    return CopyParsed(rows, tuple(errors), currencies, period_start, period_end)


def _amount_bad(layout: SettlementCsvLayout) -> dict[str, str]:
    """SQL per amount field: true when its text is not an amount (parameter: the pattern)."""
    return {
        f: f"({_col(layout, f)} !~ %s OR length({_col(layout, f)}) > {SETTLEMENT_INTEGER_MAX_LENGTH})"
        for f in _AMOUNTS
    }


def _errors(
    cursor, layout: SettlementCsvLayout, *, error: str, error_params: list, source: str, params: list
) -> list[tuple[int, str]]:
    """(line number, message) of the rows that failed a check, in line order."""
    amount_bad = _amount_bad(layout)
    amount_raw = "CASE " + " ".join(f"WHEN {amount_bad[f]} THEN {_col(layout, f)}" for f in _AMOUNTS) + " END"
    cursor.execute(
        f"SELECT line, error, raw FROM (SELECT r.n + %s AS line, ({error}) AS error, {amount_raw} AS raw {source}) e"
        " WHERE error IS NOT NULL ORDER BY line",
        [layout.first_line - 1, *error_params, *([SETTLEMENT_INTEGER_PATTERN] * len(_AMOUNTS)), *params],
    )
    errors = []
    for line, message, raw in cursor.fetchall():
        if message in _AMOUNTS:  # worded by the adapter's own rule
            try:
                layout.value(message, raw)
            except (ValueError, TypeError) as exc:
                message = str(exc)
        errors.append((int(line), message))
    return errors
