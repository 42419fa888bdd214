"""PCI DSS data discovery: where are card numbers stored in clear? (`manage.py scan_card_numbers`)

Set-based, so it stays fast on millions of rows: one query per table reads only the candidate
values, those of its text and JSON columns a SQL regex says hold 13+ digits (split by single
spaces or dashes at most) starting like a card, streamed in batches through a server-side cursor;
only those candidates go through `payera.core.masking.card_number_spans` (a scheme's prefix and
length plus Luhn) in Python, and count when the number stands alone, not glued to a letter
(`card_number_spans_stored`). No ORM row is loaded.

- PostgreSQL: `column::text ~ CANDIDATE_PATTERN`, evaluated by the database.
- SQLite (embedded default): SQLite has no regex operator; Django's `REGEXP` function (Python's
  `re` called by SQLite per row) runs the same pattern. Same results, slower: fine for embedded
  sizes, not for millions of rows.

`card_numbers_mask` rewrites the values found with their card numbers masked (BIN and last 4,
`mask_pans`; JSON stays valid: masked in its parsed structure, `mask_card_numbers`), in one
transaction, each row re-read under its lock, and writes one audit record per row changed (the
column and the masked sample; never the number). It never touches append-only tables
(`IMMUTABLE_TABLES`: the ledger's journals and entries, the audit trail, the staff actions), tables without a model,
or columns that look like hashes or ciphertexts (`OPAQUE_COLUMN_RE`): those are reported, for a
person to deal with (docs/runbooks/card-number-found.md).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from django.apps import apps
from django.db import DatabaseError, connections, transaction

from payera.core.masking import (
    card_number_spans,
    is_card_number,
    mask_card_numbers,
    mask_pans,
    mask_text,
)

# Tables whose rows are never updated: database triggers refuse it (the ledger: corrections are
# reversing journals; the audit trail and the staff actions' log: records are append-only). Named,
# not imported: the platform knows no domain app.
IMMUTABLE_TABLES = frozenset(
    {"ledger_journal", "ledger_entry", "audit_auditlogentry", "audit_securityevent", "backoffice_staffaction"}
)
# Columns whose values are hashes, ciphertexts or signed blobs: a run of digits in them is chance,
# and rewriting one would break what it protects. Reported, never masked.
OPAQUE_COLUMN_RE = re.compile(
    r"hash|digest|fingerprint|cipher|encrypted|signature|password|secret|salt|nonce|"
    r"session_data|session_key",
    re.IGNORECASE,
)

TEXT_TYPES = frozenset({"CharField", "TextField", "EmailField", "SlugField", "URLField", "FilePathField"})
JSON_TYPES = frozenset({"JSONField"})
# 13 or more digits, split by single spaces or dashes, starting with a digit some scheme starts
# with (no card starts with 0, 1 or 7) and not glued to a letter or digit before it: every card
# number the scan reports (`card_number_spans_stored`), and then some.
CANDIDATE_PATTERN = "(^|[^0-9A-Za-z])[2-689]([ -]?[0-9]){12}"
BATCH_SIZE = 2000
_DIGIT_RUN_RE = re.compile(r"(?<!\d)\d+(?:[ -]\d+)*(?!\d)")  # as payera.core.masking's

FOUND, MASKED, IMMUTABLE, OPAQUE, NO_MODEL, NO_KEY, CHANGED, REFUSED = (
    "found",
    "masked",
    "immutable",
    "opaque",
    "no_model",
    "no_key",
    "changed",
    "refused",
)
NOTES = {
    IMMUTABLE: "immutable, cannot be masked",
    OPAQUE: "hash or ciphertext column: check by hand, not masked",
    NO_MODEL: "table without a model: mask by hand",
    NO_KEY: "table without a primary key: mask by hand",
    CHANGED: "the row changed during the run: scan again",
    REFUSED: "the database refused the update",
}


@dataclass(frozen=True, slots=True)
class Column:
    table: str
    name: str
    kind: str  # "text" | "json"
    pk: str | None

    @property
    def mutable(self) -> bool:
        return self.table not in IMMUTABLE_TABLES


@dataclass(slots=True)
class Finding:
    table: str
    column: str
    row_id: str | None
    sample: str
    status: str = FOUND

    def as_dict(self) -> dict:
        return {**asdict(self), "note": NOTES.get(self.status, "")}


def _quote(connection, name: str) -> str:
    return connection.ops.quote_name(name)


def scanned_columns(*, using: str = "default", tables: list[str] | None = None) -> list[Column]:
    """The text and JSON columns of the database's tables (introspected: tables without a model
    too), with each table's primary key."""
    connection = connections[using]
    columns = []
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            if tables and table not in tables:
                continue
            pk = connection.introspection.get_primary_key_column(cursor, table)
            for info in connection.introspection.get_table_description(cursor, table):
                try:
                    field_type = connection.introspection.get_field_type(info.type_code, info)
                except KeyError:  # a type Django does not map (arrays, ...): no text
                    continue
                kind = "text" if field_type in TEXT_TYPES else "json" if field_type in JSON_TYPES else None
                size = info.display_size or info.internal_size
                if kind == "text" and field_type == "CharField" and size and 0 < size < 13:
                    continue  # too short to hold a card number (a status, a currency)
                if kind and info.name != pk:
                    columns.append(Column(table, info.name, kind, pk))
    return columns


def _candidate_sql(connection, table: str, columns: list[Column]) -> tuple[str, list[str]]:
    """One query per table: the primary key and, per column, its value when it is a candidate."""
    q = lambda name: _quote(connection, name)  # noqa: E731
    pk = q(columns[0].pk) if columns[0].pk else ("ctid" if connection.vendor == "postgresql" else "rowid")
    if connection.vendor == "postgresql":
        tests = [f"{q(c.name)}::text ~ %s" for c in columns]
        values = [f"{q(c.name)}::text" for c in columns]
    else:
        tests = [f"{q(c.name)} REGEXP %s" for c in columns]
        values = [q(c.name) for c in columns]
    picks = [f"CASE WHEN {test} THEN {value} END" for test, value in zip(tests, values, strict=True)]
    # Identifiers from the database's own catalog, quoted; the pattern is a parameter.
    sql = f"SELECT {pk}, {', '.join(picks)} FROM {q(table)} WHERE {' OR '.join(tests)}"  # noqa: S608
    return sql, [CANDIDATE_PATTERN] * (2 * len(columns))


def card_number_spans_stored(text: str) -> list[tuple[int, int]]:
    """The (start, end) of each card number in `text` (`card_number_spans`) that stands alone: not
    glued to a letter on either side. A run of digits inside a hex hash or an id (`att_1f50…`,
    a fingerprint) is chance, not a card typed or pasted; rewriting it would break the id. (The
    logs' mask is broader: it masks those too.)"""
    found = []
    for match in _DIGIT_RUN_RE.finditer(text):
        if len(match.group(0)) < 13:
            continue
        for start, end in card_number_spans(match.group(0)):
            start, end = match.start() + start, match.start() + end
            if (start and text[start - 1].isalpha()) or (end < len(text) and text[end].isalpha()):
                continue
            found.append((start, end))
    return found


def holds_stored_card_number(text: str) -> bool:
    return len(text) >= 13 and bool(card_number_spans_stored(text))


def masked_sample(text: str) -> str:
    """The first card number in `text`, masked, with a little of the text around it: cut from the
    text once all its card numbers are masked (a cut never leaves part of one in clear), then
    masked as a log line is (`mask_text`: secrets and IBANs too)."""
    spans = card_number_spans_stored(text)
    if not spans:
        return ""
    digits = re.sub(r"[ -]", "", text[spans[0][0] : spans[0][1]])
    first = digits[:6] + "*" * (len(digits) - 10) + digits[-4:]
    masked = mask_pans(text)
    at = masked.find(first)
    if at < 0:
        return first
    return mask_text(masked[max(0, at - 24) : at + len(first) + 24])


def _status_of(column: Column, models_by_table: dict) -> str:
    if not column.mutable:
        return IMMUTABLE
    if OPAQUE_COLUMN_RE.search(column.name):
        return OPAQUE
    if column.table not in models_by_table:
        return NO_MODEL
    return FOUND


def _models_by_table() -> dict[str, type]:
    return {model._meta.db_table: model for model in apps.get_models(include_auto_created=True)}


def card_numbers_scan(
    *, using: str = "default", tables: list[str] | None = None, batch_size: int = BATCH_SIZE
) -> Iterator[Finding]:
    """Every stored value holding a card number: table, column, row id and a masked sample."""
    connection = connections[using]
    by_table: dict[str, list[Column]] = {}
    for column in scanned_columns(using=using, tables=tables):
        by_table.setdefault(column.table, []).append(column)
    models_by_table = _models_by_table()
    for table, columns in by_table.items():
        sql, params = _candidate_sql(connection, table, columns)
        with connection.chunked_cursor() as cursor:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(batch_size):
                for row_id, *values in rows:
                    for column, value in zip(columns, values, strict=True):
                        if value is not None and holds_stored_card_number(value):
                            yield Finding(
                                table,
                                column.name,
                                None if row_id is None else str(row_id),
                                masked_sample(value),
                                _status_of(column, models_by_table),
                            )


def _masked_json(value):
    """A parsed JSON document with its card numbers masked; a number that is one becomes its
    masked string, so the document stays valid JSON."""
    if isinstance(value, int) and not isinstance(value, bool) and is_card_number(str(value)):
        return mask_pans(str(value))
    if isinstance(value, dict):
        return {mask_card_numbers(k) if isinstance(k, str) else k: _masked_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked_json(v) for v in value]
    return mask_card_numbers(value)


def masked_value(value: str, *, kind: str) -> str:
    """A stored value with its card numbers masked. JSON (a JSON column, or text that is a JSON
    object or array, such as a stored webhook body) is masked in its parsed structure and
    serialized again, so it stays valid JSON; other text is masked as text."""
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if isinstance(parsed, (dict, list)) or (kind == "json" and parsed is not None):
        return json.dumps(_masked_json(parsed), ensure_ascii=False)
    return mask_pans(value)


def _audit(model, row_id: str, column: str, sample: str, run_id: str) -> None:
    from django.contrib.contenttypes.models import ContentType

    from payera.audit.models import AuditLogEntry

    AuditLogEntry.objects.create(
        content_type=ContentType.objects.get_for_model(model, for_concrete_model=False),
        object_pk=row_id,
        object_id=int(row_id) if row_id.isdigit() and len(row_id) < 19 else None,
        object_repr=f"{model._meta.db_table} {row_id}"[:200],
        action=AuditLogEntry.Action.UPDATE,
        changes={column: [sample, "masked"]},
        changes_text=f"scan_card_numbers --mask: card numbers in {column} masked",
        additional_data={
            "command": "scan_card_numbers --mask",
            "table": model._meta.db_table,
            "column": column,
            "run": run_id,
        },
        cid=run_id,
    )


def card_numbers_mask(*, using: str = "default", tables: list[str] | None = None) -> list[Finding]:
    """Scan, then mask every finding in a mutable column of a model's table, in one transaction:
    each row is re-read under its lock and masked from its current value; one audit record per row
    and column. Returns the findings with their status (`masked` or why not)."""
    from payera.audit.models import audit_entries_batched

    connection = connections[using]
    models_by_table = _models_by_table()
    columns = {(c.table, c.name): c for c in scanned_columns(using=using, tables=tables)}
    run_id = f"scan_{uuid.uuid4().hex[:16]}"
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with transaction.atomic(using=using, durable=True), audit_entries_batched():
        findings = list(card_numbers_scan(using=using, tables=tables))
        for finding in findings:
            column = columns[(finding.table, finding.column)]
            if finding.status == FOUND and column.pk is None:
                finding.status = NO_KEY
            if finding.status != FOUND:
                continue
            q = lambda name: _quote(connection, name)  # noqa: E731
            where = f"{q(column.pk)} = %s"
            read = f"{q(column.name)}::text" if connection.vendor == "postgresql" else q(column.name)
            cast = "::jsonb" if column.kind == "json" and connection.vendor == "postgresql" else ""
            with connection.cursor() as cursor:
                select = f"SELECT {read} FROM {q(finding.table)} WHERE {where}{lock}"  # noqa: S608 (quoted catalog names)
                cursor.execute(select, [finding.row_id])
                row = cursor.fetchone()
                if row is None or row[0] is None or not holds_stored_card_number(row[0]):
                    finding.status = CHANGED
                    continue
                new = masked_value(row[0], kind=column.kind)
                if holds_stored_card_number(new):
                    finding.status = REFUSED
                    continue
                try:
                    with transaction.atomic(using=using):
                        update = f"UPDATE {q(finding.table)} SET {q(column.name)} = %s{cast} WHERE {where}"  # noqa: S608
                        cursor.execute(update, [new, finding.row_id])
                except DatabaseError:
                    finding.status = REFUSED
                    continue
            _audit(models_by_table[finding.table], finding.row_id, finding.column, finding.sample, run_id)
            finding.status = MASKED
    return findings
