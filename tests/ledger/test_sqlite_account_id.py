"""Review 14c: what PostgreSQL refuses, SQLite (the embedded default) must refuse too
(docs/ledger.md "What the database enforces": "account identity never changes" is a trigger on both).
The cases run in one subprocess on a fresh SQLite file (sqlite_account_id_check.py)."""

import pytest

from tests.ledger.conftest import sqlite_case_results


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return sqlite_case_results("sqlite_account_id_check.py", tmp_path_factory.mktemp("review14c"), timeout=300)


def test_sqlite_refuses_a_change_of_an_accounts_id(results):
    """On SQLite `UPDATE ledger_account SET id = ...` is accepted; PostgreSQL refuses it
    (ledger_account_guard fires on UPDATE OF id, migration 0005; tests/ledger/test_statement_checks.py
    ::test_an_accounts_id_never_changes). Entries name their account by id with no foreign key, so
    swapping two merchants' account ids moves one merchant's entries (its balance transactions at once,
    its balance at the next ledger_rebuild) to the other without a journal. Expected: refused with
    "identity never changes". Suspected: ledger/sql/sqlite.sql, trigger ledger_account_identity
    (`BEFORE UPDATE OF owner, code, currency, type, hot, parent_id, shard`: no `id`)."""
    assert results.get("account_id_change_refused") == "ok", results.get("account_id_change_refused")
