"""PostgreSQL parses a plain CSV settlement report itself (COPY into a text stage, casts and row
checks in SQL); what it cannot read goes to the adapter's Python parser. Either way the result is
the Python parser's: the same rows, the same unreadable lines with the same numbers and words."""

from __future__ import annotations

import pytest

from psp_adapters.registry import get_adapter
from psp_adapters.sandbox.reports import ALPHA_COLUMNS
from reconciliation.models import ReconciliationRun, StatementLine
from reconciliation.services import reconcile_import

pytestmark = pytest.mark.django_db(transaction=True)

DAY = "2026-11-23"


def row(kind="capture", day=DAY, ref="att_x1", auth="auth_x1", op="op_x1", opref="cap_x1", cur="EUR",
        gross="1000", fee="39", net="961") -> str:  # fmt: skip
    return ",".join([kind, day, "PB-1", auth, ref, op, opref, cur, gross, fee, net, f"{DAY}T12:00:00Z"])


def alpha_file(*rows: str, trailer: bool = True) -> bytes:
    lines = [",".join(ALPHA_COLUMNS), *rows]
    if trailer:
        lines.append(f"end_of_report,{DAY}" + "," * (len(ALPHA_COLUMNS) - 2))
    return ("\n".join(lines) + "\n").encode()


def staged(run_id: str) -> list[tuple]:
    return list(
        StatementLine.objects.filter(run_id=run_id).order_by("line_number").values_list(
            "line_number", "row_key", "kind", "reference", "psp_reference", "operation_reference",
            "operation_psp_reference", "gross", "fee", "net", "currency", "settled_on", "payout_batch_id",
        )
    )  # fmt: skip


def as_python_reads(raw: bytes) -> tuple[list[dict], list[tuple]]:
    """What the adapter's Python parser makes of the file: errors as the run lists them, rows as staged."""
    from reconciliation.services.reconcile import row_key

    report = get_adapter("alpha").read_settlement_report(raw)
    errors = [{"line": e.line_number, "message": e.message} for e in report.errors]
    rows = [
        (r.line_number, row_key("alpha", r), str(r.kind), r.reference, r.psp_reference, r.operation_reference or "",
         r.operation_psp_reference or "", r.gross, r.fee, r.net, r.currency, r.settled_on, r.payout_batch_id)
        for r in report.rows
    ]  # fmt: skip
    return errors, rows


def test_postgresql_parses_the_file_with_the_python_parsers_rows_errors_and_line_numbers(day):
    raw = alpha_file(
        row(),  # line 2
        row(gross="12x"),  # 3
        row(kind="bogus"),  # 4
        row(cur="XXX"),  # 5
        row(day="2026-13-01"),  # 6
        row(ref=" "),  # 7
        row(kind="refund", ref="att_x2", auth="auth_x2", op="", opref=" re_x2 ", gross=" -500 ", fee="0",
            net="-500", cur="eur"),  # 8: padded, lower-case currency, no PSP operation id  # fmt: skip
        row(ref="att_x3", auth="auth_x3", op="op_x3", gross="1234567890123456789"),  # 9: too long for minor units
        row(ref="att_x4", auth="auth_x4", op="op_x4", fee="", net="961"),  # 10: empty fee
        row(),  # 11: line 2 again
    )
    result = reconcile_import(psp="alpha", raw=raw)
    run = ReconciliationRun.objects.get(pk=result.run_id)
    assert run.summary["parser"] == "postgresql"
    errors, rows = as_python_reads(raw)
    assert [e["line"] for e in errors] == [3, 4, 5, 6, 7, 9, 10]
    assert run.row_errors == errors and run.row_error_count == 7
    assert staged(run.id) == rows
    assert [r[0] for r in rows] == [2, 8, 11]
    assert (run.period_start.isoformat(), run.period_end.isoformat()) == (DAY, DAY)
    assert result.rows == 3 and result.discrepancies["duplicate"] == 1


def test_without_a_trailer_the_period_is_the_rows_dates(day):
    raw = alpha_file(row(day="2026-11-21"), row(ref="att_x2", auth="auth_x2", op="op_x2"), trailer=False)
    run = ReconciliationRun.objects.get(pk=reconcile_import(psp="alpha", raw=raw).run_id)
    assert run.summary["parser"] == "postgresql"
    assert (run.period_start.isoformat(), run.period_end.isoformat()) == ("2026-11-21", DAY)


@pytest.mark.parametrize(
    "bad",
    [
        row().rsplit(",", 2)[0],  # too few fields: COPY refuses the file
        row() + ",extra",  # one field too many
    ],
)
def test_a_file_copy_refuses_is_read_by_the_python_parser(day, bad):
    raw = alpha_file(row(), bad, row(ref="att_x2", auth="auth_x2", op="op_x2"))
    result = reconcile_import(psp="alpha", raw=raw)
    run = ReconciliationRun.objects.get(pk=result.run_id)
    assert run.summary["parser"] == "python"
    errors, rows = as_python_reads(raw)
    assert run.row_errors == errors and staged(run.id) == rows
    assert run.status == "done" and run.rows_loaded == run.rows_total == len(rows)


def test_quoted_fields_and_blank_lines_are_read_in_python(day):
    quoted = alpha_file(row(), row(ref="att_x2", auth="auth_x2", op="op_x2").replace("PB-1", '"PB,1"'))
    blank = alpha_file(row(), "", row(ref="att_x2", auth="auth_x2", op="op_x2"))
    for raw in (quoted, blank):
        run = ReconciliationRun.objects.get(pk=reconcile_import(psp="alpha", raw=raw).run_id)
        assert run.summary["parser"] == "python"
        assert staged(run.id) == as_python_reads(raw)[1] and len(staged(run.id)) == 2
