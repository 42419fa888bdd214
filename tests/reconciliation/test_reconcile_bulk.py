"""A large import into a small lines table sets the table's secondary indexes and its primary key
(with the discrepancies' foreign key to it) aside during the INSERT and builds them again in the
same transaction; a busy table or a long history keeps them."""

from __future__ import annotations

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction

from reconciliation.models import Discrepancy, ReconciliationRun, StatementLine
from reconciliation.services import reconcile, reconcile_import
from tests.reconciliation.test_reconcile_copy import alpha_file, row

pytestmark = pytest.mark.django_db(transaction=True)


def line_indexes() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname",
            [StatementLine._meta.db_table],
        )
        return cursor.fetchall()


def line_constraints() -> list[tuple[str, str, str]]:
    """The lines' constraints and those that reference them: (table, name, definition)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass OR confrelid = %s::regclass ORDER BY 1, 2",
            [StatementLine._meta.db_table] * 2,
        )
        return cursor.fetchall()


def rows(n: int, start: int = 0) -> list[str]:
    return [row(ref=f"att_b{i}", auth=f"auth_b{i}", op=f"op_b{i}", opref=f"cap_b{i}") for i in range(start, start + n)]




def test_a_large_import_into_a_small_table_builds_the_indexes_after_the_insert(day, monkeypatch, statements):
    monkeypatch.setattr(reconcile, "BULK_MIN_ROWS", 5)
    before = line_indexes()
    assert len(before) == 5  # the primary key and four secondary indexes
    result = reconcile_import(psp="alpha", raw=alpha_file(*rows(6), row(ref="att_b0", auth="auth_b0", op="op_b0")))
    # three set aside; the partial index of the unmatched lines stays (it is small to maintain)
    dropped = [s for s in statements if "DROP INDEX" in s]
    assert len(dropped) == 3 and not any("recon_line_unmatched_idx" in s for s in dropped)
    assert line_indexes() == before
    assert result.rows == 7
    assert result.discrepancies["missing_in_payera"] == 6 and result.discrepancies["duplicate"] == 1
    # the rebuilt indexes serve: a second file's rows seen before are duplicates
    again = reconcile_import(psp="alpha", raw=alpha_file(*rows(2)))
    assert StatementLine.objects.filter(run_id=again.run_id, outcome="duplicate", duplicate=True).count() == 2
    assert again.discrepancies["duplicate"] == 0 and again.discrepancies["missing_in_payera"] == 2  # as they were
    assert ReconciliationRun.objects.get(pk=again.run_id).status == "done"


def test_an_import_smaller_than_the_table_keeps_the_indexes(day, monkeypatch, statements):
    monkeypatch.setattr(reconcile, "BULK_MIN_ROWS", 5)
    reconcile_import(psp="alpha", raw=alpha_file(*rows(20)))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {StatementLine._meta.db_table}")
    statements.clear()
    reconcile_import(psp="alpha", raw=alpha_file(*rows(6, start=100)))
    assert not any("DROP INDEX" in s for s in statements)
    assert StatementLine.objects.count() == 26


def test_a_busy_lines_table_keeps_its_indexes(day, monkeypatch, statements):
    monkeypatch.setattr(reconcile, "BULK_MIN_ROWS", 5)
    before = line_indexes()
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}) as other:
        other.execute(f"LOCK TABLE {StatementLine._meta.db_table} IN ACCESS SHARE MODE")  # a reader, in a transaction
        result = reconcile_import(psp="alpha", raw=alpha_file(*rows(6)))
        other.rollback()
    assert result.rows == 6 and line_indexes() == before
    assert not any("CREATE INDEX" in s for s in statements)


def test_the_primary_key_and_the_discrepancies_foreign_key_are_set_aside_and_taken_back(day, monkeypatch, statements):
    monkeypatch.setattr(reconcile, "BULK_MIN_ROWS", 5)
    before = line_constraints()
    assert any(d.startswith("PRIMARY KEY") for _, _, d in before)
    assert any(t == Discrepancy._meta.db_table and d.startswith("FOREIGN KEY") for t, _, d in before)
    result = reconcile_import(psp="alpha", raw=alpha_file(*rows(6)))
    assert result.rows == 6 and result.discrepancies["missing_in_payera"] == 6
    # maintained line by line, the primary key was a sixth of the INSERT: built after it instead
    dropped = [s for s in statements if "DROP CONSTRAINT" in s]
    assert len(dropped) == 2 and any("pkey" in s for s in dropped)
    assert line_constraints() == before
    # both hold again: a second line with an id taken, a discrepancy naming no line
    line = StatementLine.objects.filter(run_id=result.run_id).first()
    with pytest.raises(IntegrityError), transaction.atomic():
        StatementLine.objects.create(**{**{f.attname: getattr(line, f.attname) for f in StatementLine._meta.fields},
                                        "row_key": "alpha:capture:another"})  # fmt: skip
    with pytest.raises(IntegrityError), transaction.atomic():
        Discrepancy.objects.create(run_id=result.run_id, line_id=10**12, kind="duplicate", psp="alpha", currency="EUR")
    assert Discrepancy.objects.filter(run_id=result.run_id, line__isnull=False).count() == 6


def test_a_busy_discrepancy_table_keeps_the_lines_keys_and_indexes(day, monkeypatch, statements):
    monkeypatch.setattr(reconcile, "BULK_MIN_ROWS", 5)
    before, constraints = line_indexes(), line_constraints()
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}) as other:
        other.execute(f"LOCK TABLE {Discrepancy._meta.db_table} IN ACCESS SHARE MODE")  # a reader of discrepancies
        result = reconcile_import(psp="alpha", raw=alpha_file(*rows(6)))
        other.rollback()
    assert result.rows == 6 and line_indexes() == before and line_constraints() == constraints
    assert not any("DROP INDEX" in s or "DROP CONSTRAINT" in s for s in statements)
