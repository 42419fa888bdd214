"""The lines of an import take their ids as one block reserved from the lines' id sequence (no
nextval() per line), numbered by the INSERT (a clean file by each row's position in its COPY, a
staged one by row_number()); concurrent imports get blocks of their own."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection

from reconciliation.models import StatementLine
from reconciliation.services import reconcile as reconcile_module
from reconciliation.services import reconcile_import
from tests.helpers import race
from tests.reconciliation.test_reconcile_copy import DAY, alpha_file, row

pytestmark = pytest.mark.django_db(transaction=True)


def rows(n: int, start: int = 0) -> list[str]:
    return [row(ref=f"att_i{i}", auth=f"auth_i{i}", op=f"op_i{i}", opref=f"cap_i{i}") for i in range(start, start + n)]


def ids(run_id: str) -> list[int]:
    return sorted(StatementLine.objects.filter(run_id=run_id).values_list("id", flat=True))


def test_an_imports_lines_are_one_block_of_ids_without_a_nextval_per_line(day, statements):
    result = reconcile_import(psp="alpha", raw=alpha_file(*rows(5)))
    got = ids(result.run_id)
    assert got == list(range(got[0], got[0] + 5))
    insert = [s for s in statements if "INSERT INTO reconciliation_statementline" in s]
    assert insert and not any("nextval" in s for s in insert)
    # the sequence has moved past the block: the next line (ORM, any import) takes a new id
    line = StatementLine.objects.get(run_id=result.run_id, line_number=2)
    line.pk, line.row_key, line.line_number = None, "alpha:capture:other", 99
    line.save()
    assert line.pk > got[-1]


def test_a_retried_match_reserves_a_new_block(day, statements):
    # a key twice in a clean file: the optimistic INSERT fails and the match runs again
    result = reconcile_import(psp="alpha", raw=alpha_file(*rows(3), *rows(1)))
    assert result.discrepancies["duplicate"] == 1
    got = ids(result.run_id)
    assert len(got) == 4 and got == list(range(got[0], got[0] + 4))
    assert sum("pg_advisory_lock" in s for s in statements) == 2


def test_concurrent_imports_take_blocks_of_their_own(day):
    # reports of three days (their trailers' dates): files of one period would take turns (busy)
    files = [
        alpha_file(*rows(40, start=start)).replace(f"end_of_report,{DAY}".encode(), f"end_of_report,{d}".encode())
        for start, d in ((0, DAY), (100, "2026-11-22"), (200, "2026-11-21"))
    ]
    pick = iter(range(3))

    def one():
        return reconcile_import(psp="alpha", raw=files[next(pick)])

    results = race(3, one)
    blocks = [ids(r.run_id) for r in results]
    for block in blocks:
        assert len(block) == 40 and block == list(range(block[0], block[0] + 40))
    assert len({i for block in blocks for i in block}) == 120
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value FROM reconciliation_statementline_id_seq")
        assert cursor.fetchone()[0] >= max(max(b) for b in blocks)


def test_a_clean_files_ids_follow_its_lines_without_a_window(day, statements):
    # the file is not staged: each line's id is its row's position in the COPY, counted from the
    # block's first id (row_number() spools every row of a million-line INSERT into a tuplestore)
    result = reconcile_import(psp="alpha", raw=alpha_file(*rows(4)))
    lines = list(StatementLine.objects.filter(run_id=result.run_id).values_list("line_number", "id"))
    first = min(i for _, i in lines)
    assert sorted(lines) == [(n, first + n - 2) for n in range(2, 6)]
    insert = [s for s in statements if "INSERT INTO reconciliation_statementline" in s]
    assert insert and not any("OVER ()" in s for s in insert)


def test_a_staged_files_ids_are_one_block_numbered_by_row_number(day, statements):
    # a bad amount stages the file (its line listed): the staged rows are numbered by row_number()
    bad = row(ref="att_z", op="op_z", gross="12x")
    result = reconcile_import(psp="alpha", raw=alpha_file(*rows(2), bad, *rows(2, start=5)))
    assert result.row_error_count == 1 and result.rows == 4
    got = ids(result.run_id)
    assert got == list(range(got[0], got[0] + 4))
    assert any("row_number() OVER ()" in s for s in statements if "INSERT INTO reconciliation_statementline" in s)


def test_a_copy_position_beyond_the_reserved_block_fails_the_match(day, monkeypatch):
    # never in practice (the COPY holds rows_total rows): a row numbered past the block would take
    # another import's id, so the INSERT gives it none and fails instead
    copy_staged = reconcile_module._copy_staged

    def undercount(run, parsed):
        copy_staged(run, parsed)
        run.rows_total = parsed.rows - 1
        run.save(update_fields=["rows_total"])

    monkeypatch.setattr(reconcile_module, "_copy_staged", undercount)
    with pytest.raises(IntegrityError):
        reconcile_import(psp="alpha", raw=alpha_file(*rows(3)))
    assert not StatementLine.objects.exists()
