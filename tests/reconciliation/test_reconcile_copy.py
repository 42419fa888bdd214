"""PostgreSQL parses a plain CSV settlement report itself (COPY into a text stage, casts and row
checks in SQL); what it cannot read goes to the adapter's Python parser. Either way the result is
the Python parser's: the same rows, the same unreadable lines with the same numbers and words."""

from __future__ import annotations

import pytest

from psp_adapters.errors import SettlementReportError
from psp_adapters.registry import get_adapter
from psp_adapters.sandbox.reports import ALPHA_COLUMNS
from reconciliation.errors import SettlementFileInvalidError
from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
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
        row(kind="chargeback_reversal", ref="att_x5", auth="auth_x5", op="dp_x5", opref="", fee="0",
            net="1000"),  # 12: a won dispute's money back (the longest record type)  # fmt: skip
    )
    result = reconcile_import(psp="alpha", raw=raw)
    run = ReconciliationRun.objects.get(pk=result.run_id)
    assert run.summary["parser"] == "postgresql"
    errors, rows = as_python_reads(raw)
    assert [e["line"] for e in errors] == [3, 4, 5, 6, 7, 9, 10]
    assert run.row_errors == errors and run.row_error_count == 7
    assert staged(run.id) == rows
    assert [r[0] for r in rows] == [2, 8, 11, 12]
    assert (run.period_start.isoformat(), run.period_end.isoformat()) == (DAY, DAY)
    assert result.rows == 4 and result.discrepancies["duplicate"] == 1


@pytest.mark.parametrize(
    "cut",
    [
        lambda lines: lines[:-1],  # no trailer
        lambda lines: [*lines[:-2], lines[-2][:12]],  # cut in the middle of a row
        lambda lines: lines[:1],  # the header only
        lambda lines: [*lines, lines[1]],  # a record after the trailer
    ],
    ids=["no-trailer", "cut-mid-row", "header-only", "record-after-trailer"],
)
@pytest.mark.parametrize("ending", ["\n", "\r\n"], ids=["copy", "python"])
def test_a_file_without_its_trailer_as_the_last_line_is_refused_whole(day, cut, ending):
    """docs/sandbox.md: the trailer is the last line; without it the file was cut short (a half
    import would report the rest as missing at the PSP). Refused by either parser."""
    lines = alpha_file(row(), row(ref="att_x2", auth="auth_x2", op="op_x2")).decode().splitlines()
    raw = ending.join(cut(lines)).encode()
    with pytest.raises(SettlementFileInvalidError, match="end_of_report"):
        reconcile_import(psp="alpha", raw=raw)
    assert not ReconciliationRun.objects.exists() and not StatementLine.objects.exists()
    with pytest.raises(SettlementReportError, match="end_of_report"):
        get_adapter("alpha").read_settlement_report(raw)


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


def clean_rows(n: int = 3) -> list[str]:
    return [row(ref=f"att_c{i}", auth=f"auth_c{i}", op=f"op_c{i}", opref=f"cap_c{i}") for i in range(n)]


def staged_by_insert(statements: list[str]) -> bool:
    return any("INSERT INTO recon_stage" in " ".join(s.split()) for s in statements)


def test_a_clean_file_is_matched_straight_from_its_copy_without_a_stage(day, statements):
    raw = alpha_file(*clean_rows(), row(kind="refund", ref="att_c0", auth="auth_c0", op="", opref="re_c0",
                                       gross="-500", fee="0", net="-500", cur="eur", day="2026-11-22"),
                     clean_rows(1)[0])  # fmt: skip
    result = reconcile_import(psp="alpha", raw=raw)
    run = ReconciliationRun.objects.get(pk=result.run_id)
    assert not staged_by_insert(statements)
    # one scan judges the clean (ASCII) file, by byte lengths (length() would count UTF-8 characters)
    [scan] = [s for s in statements if "bool_or(" in s]
    assert "octet_length(" in scan and " length(" not in scan and "(length(" not in scan
    assert run.summary["parser"] == "postgresql" and run.row_error_count == 0
    errors, rows = as_python_reads(raw)
    assert errors == [] and staged(run.id) == rows  # a lower-case currency, an empty operation id, two dates
    assert result.rows == 5 and result.discrepancies["duplicate"] == 1
    assert (run.period_start.isoformat(), run.period_end.isoformat()) == (DAY, DAY)  # the trailer's day


@pytest.mark.parametrize(
    "bad, line_errors",
    [
        (row(ref="att_b1", auth="auth_b1", op="op_b1", gross="12x"), 1),  # the cast fails in the match: staged then
        (row(ref="att_b1", auth="auth_b1", op="op_b1", fee="1e3"), 1),
        (row(ref="att_b1", auth="auth_b1", op="op_b1", gross="0" * 19 + "1"), 1),  # longer than the rule allows
        (row(ref="", auth="auth_b1", op="op_b1"), 1),  # a reference missing
        (row(ref="att_b1", auth="auth_b1", op="op_b1", kind="bogus"), 1),
        (row(ref="att_b1", auth="auth_b1", op="op_b1", cur="XXX"), 1),
    ],
)
def test_a_bad_row_in_a_clean_file_is_listed_by_line_and_the_rest_imports(day, statements, bad, line_errors):
    raw = alpha_file(*clean_rows(2), bad, *clean_rows(4)[2:])
    result = reconcile_import(psp="alpha", raw=raw)
    run = ReconciliationRun.objects.get(pk=result.run_id)
    errors, rows = as_python_reads(raw)
    assert [e["line"] for e in errors] == [4] and len(errors) == line_errors
    assert run.row_errors == errors and run.row_error_count == 1
    assert staged(run.id) == rows and result.rows == 4
    assert run.summary["parser"] == "postgresql" and staged_by_insert(statements)
    assert run.status == "done" and run.rows_loaded == run.rows_total == 4


def test_a_clean_file_whose_row_keys_an_earlier_run_has_marks_them_duplicates(day, statements):
    reconcile_import(psp="alpha", raw=alpha_file(*clean_rows(2)))
    statements.clear()
    again = reconcile_import(psp="alpha", raw=alpha_file(*clean_rows(3)))
    assert not staged_by_insert(statements)
    assert StatementLine.objects.filter(run_id=again.run_id, outcome="duplicate").count() == 2
    # sent again: counted as the earlier lines were (unknown to Payera), no new discrepancy for them
    assert again.rows == 3 and again.discrepancies["duplicate"] == 0
    assert again.discrepancies["missing_in_payera"] == 3
    assert Discrepancy.objects.filter(run_id=again.run_id).count() == 1


def windowed(statements: list[str]) -> bool:
    return any("OVER (PARTITION BY" in s for s in statements)


def test_a_clean_file_without_a_key_twice_is_matched_without_sorting_it(day, statements):
    result = reconcile_import(psp="alpha", raw=alpha_file(*clean_rows(4)))
    assert result.rows == 4 and result.discrepancies["duplicate"] == 0
    assert not windowed(statements) and not staged_by_insert(statements)
    # a report of captures joins captures only (not refunds or disputes)
    [match] = [s for s in statements if "INSERT INTO reconciliation_statementline" in s]
    assert "payments_capture" in match and "payments_refund" not in match and "payments_dispute" not in match


def test_a_key_twice_in_a_clean_file_is_found_by_the_unique_key_index_and_matched_again(day, statements):
    raw = alpha_file(*clean_rows(3), clean_rows(2)[1])
    result = reconcile_import(psp="alpha", raw=raw)
    assert windowed(statements)  # the optimistic INSERT was refused, the match ran again with the window
    assert result.rows == 4 and result.discrepancies["duplicate"] == 1
    assert list(StatementLine.objects.filter(run_id=result.run_id, outcome="duplicate").values_list(
        "line_number", flat=True)) == [5]  # fmt: skip


def test_a_row_key_is_counted_once_by_the_database(day):
    from django.db import IntegrityError, transaction

    result = reconcile_import(psp="alpha", raw=alpha_file(*clean_rows(1)))
    line = StatementLine.objects.get(run_id=result.run_id)
    line.pk, line.line_number = None, 3
    with pytest.raises(IntegrityError), transaction.atomic():
        line.save()  # another line with the key that is not a duplicate
    # the index reads the duplicate flag, not the outcome (a line is written before it is matched)
    line.outcome = "duplicate"
    with pytest.raises(IntegrityError), transaction.atomic():
        line.save()
    line.duplicate = True
    line.save()
    assert StatementLine.objects.filter(row_key=line.row_key).count() == 2


def duplicates(run_id: str) -> tuple[list[int], list[int]]:
    """Line numbers of the run's lines flagged duplicate, and of those whose outcome is duplicate."""
    lines = StatementLine.objects.filter(run_id=run_id).order_by("line_number")
    return (list(lines.filter(duplicate=True).values_list("line_number", flat=True)),
            list(lines.filter(outcome="duplicate").values_list("line_number", flat=True)))  # fmt: skip


@pytest.mark.parametrize("padded", [False, True])  # matched from the COPY, or staged
def test_a_duplicate_line_is_flagged_on_every_path(day, statements, padded):
    rows = clean_rows(3)
    if padded:
        rows[0] = rows[0].replace("PB-1", " PB-1")
    first = reconcile_import(psp="alpha", raw=alpha_file(*rows, rows[1]))  # line 5: line 3 again
    assert staged_by_insert(statements) is padded
    assert duplicates(first.run_id) == ([5], [5])
    # a second file: its keys seen before are duplicates (flag and outcome), its new key is not
    again = reconcile_import(psp="alpha", raw=alpha_file(*clean_rows(4)))
    assert duplicates(again.run_id) == ([2, 3, 4], [2, 3, 4])
    # the three lines the first file had are that file sent again: counted as they were then
    assert again.discrepancies["duplicate"] == 0
    assert again.matched + again.discrepancies["missing_in_payera"] == 4


def test_a_duplicate_line_is_flagged_when_parsed_in_python(day, monkeypatch):
    from psp_adapters.alpha.adapter import AlphaAdapter

    monkeypatch.setattr(AlphaAdapter, "settlement_csv_layout", lambda self, raw: None)
    rows = clean_rows(2)
    result = reconcile_import(psp="alpha", raw=alpha_file(*rows, rows[0]))
    assert ReconciliationRun.objects.get(pk=result.run_id).summary["parser"] == "python"
    assert duplicates(result.run_id) == ([4], [4])


def test_a_reference_longer_than_its_column_is_truncated_as_the_stage_does(day, statements):
    long = "att_" + "x" * 80
    raw = alpha_file(*clean_rows(2), row(ref=long, auth="auth_l", op="op_l"))
    result = reconcile_import(psp="alpha", raw=raw)
    assert staged_by_insert(statements)  # the stage truncates it: the file is staged
    assert StatementLine.objects.get(run_id=result.run_id, line_number=4).reference == long[:64]


@pytest.mark.parametrize("padded", [False, True])  # matched from the COPY, or staged
def test_a_key_another_import_settles_meanwhile_makes_the_match_run_again_as_a_duplicate(day, monkeypatch, padded):
    from reconciliation.services import reconcile

    reconcile_import(psp="alpha", raw=alpha_file(*clean_rows(1)))
    # the other import commits its line after this one looked for earlier keys: the first look finds none
    looks = {"seen": 0, "stage": 0}
    seen_create, stage_done = reconcile._seen_create, reconcile._stage_done

    def late_seen(cursor, run, rows, params):
        looks["seen"] += 1
        return 0 if looks["seen"] == 1 else seen_create(cursor, run, rows, params)

    def late_stage(run, *, staged):
        looks["stage"] += 1
        if looks["stage"] == 1 and staged:
            with reconcile.connection.cursor() as cursor:
                cursor.execute("ANALYZE recon_stage")
            return reconcile.ReconciliationRun.objects.filter(pk=run.pk).update(status="matching")
        return stage_done(run, staged=staged)

    monkeypatch.setattr(reconcile, "_seen_create", late_seen)
    monkeypatch.setattr(reconcile, "_stage_done", late_stage)
    rows = clean_rows(3)
    if padded:
        rows[2] = rows[2].replace("PB-1", " PB-1")
    again = reconcile_import(psp="alpha", raw=alpha_file(*rows))
    assert StatementLine.objects.get(run_id=again.run_id, line_number=2).outcome == "duplicate"
    # the earlier import's line sent again: counted as that line was (Payera knows none of them)
    assert again.rows == 3 and again.discrepancies["duplicate"] == 0
    assert again.discrepancies["missing_in_payera"] == 3


def test_the_migration_flags_the_lines_whose_outcome_is_duplicate(day):
    import importlib

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    migration = importlib.import_module("reconciliation.migrations.0007_line_duplicate_flag")
    result = reconcile_import(psp="alpha", raw=alpha_file(*clean_rows(2)))
    # a duplicate line as it was before the migration: the outcome says so, no flag
    StatementLine.objects.filter(run_id=result.run_id, line_number=3).update(outcome="duplicate")
    assert duplicates(result.run_id) == ([], [3])
    state_apps = MigrationExecutor(connection).loader.project_state(
        ("reconciliation", "0007_line_duplicate_flag")).apps  # fmt: skip
    with connection.schema_editor(atomic=False) as schema_editor:
        migration._flag(state_apps, schema_editor)
    assert duplicates(result.run_id) == ([3], [3])
