"""Rows repeated within a report that is also sent again (real sandbox payments over
HTTP, the sandbox's own alpha report, imported on PostgreSQL; review 14a)."""

from __future__ import annotations

import pytest

from ledger.verify import ledger_verify
from reconciliation.models import Discrepancy, StatementLine
from reconciliation.services import reconcile_import
from tests.reconciliation.sandbox_day import report

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_row_twice_in_a_report_sent_again_is_still_a_duplicate_discrepancy(a_day_of_payments):
    """docs/reconciliation.md "Import once": a row repeated within a file is a duplicate (the first
    counts) and "a duplicate ... twice within one file is a `duplicate` discrepancy"; only a line
    identical to an earlier run's line is the report sent again (no discrepancy: the earlier line
    stands for it).

    What was wrong: the day's alpha report is imported (all matched), then fetched again in the
    evening, and this time the PSP lists one capture twice (paid twice in the same batch). Both
    copies of that row are compared only with the earlier run's line (`SENT_AGAIN` in
    reconciliation/services/reconcile.py, used by `discrepancies_from_lines_sql` and
    `_sent_again`), both are identical to it, so both count as "sent again": no discrepancy is
    opened and the run reads 100 % matched, although the same file holds the row twice — the very
    case that opens a duplicate discrepancy in a file imported for the first time. Money the PSP
    reports paying twice went unnoticed. What holds now: only the first of a run's identical
    copies can be the report sent again (`repeats_sql`); the other is a `duplicate` discrepancy
    (as it would be in the first file)."""
    lines = report("alpha").decode().splitlines()
    header, body, end = lines[0], lines[1:-1], lines[-1]
    first = reconcile_import(psp="alpha", raw=("\n".join([header, *body, end]) + "\n").encode())
    assert first.matched == len(body) and not Discrepancy.objects.exists()

    again = reconcile_import(psp="alpha", raw=("\n".join([header, *body, body[0], end]) + "\n").encode())
    assert again.created and again.rows == len(body) + 1
    assert StatementLine.objects.filter(run_id=again.run_id, outcome="duplicate").count() == len(body) + 1
    assert not StatementLine.objects.filter(run_id=again.run_id).exclude(journal_reference="").exists()
    assert ledger_verify().ok
    assert again.discrepancies["duplicate"] == 1, again
    assert Discrepancy.objects.filter(run_id=again.run_id, kind="duplicate").count() == 1
