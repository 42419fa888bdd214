"""SQLite (the embedded default) refuses an unbalanced journal by itself: the journal seal
(docs/decisions/ledger-sqlite-journal-seal.md). The cases run in one subprocess on a fresh SQLite
file (sqlite_seal_check.py); each is reported and asserted here on its own."""

import pytest

from tests.ledger.conftest import sqlite_case_results

CASES = (
    "existing_database_migrates",
    "raw_balanced_journal_accepted",
    "raw_unbalanced_journal_refused",
    "raw_unbalanced_journal_in_the_old_order_refused",
    "entries_without_their_journal_refused_at_commit",
    "balanced_entries_without_their_journal_refused_at_commit",
    "entries_without_their_journal_refused_in_autocommit",
    "unsealed_marker_cannot_be_deleted",
    "marker_of_a_written_journal_refused",
    "entry_added_to_a_written_journal_refused",
    "journal_replace_refused",
    "entry_replace_refused",
    "account_replace_refused",
    "non_integer_amounts_refused",
    "journal_without_entries_refused",
    "void_with_entries_refused",
    "multi_currency_journal_balanced_per_currency_accepted",
    "multi_currency_journal_unbalanced_in_one_currency_refused",
    "currencies_do_not_offset_each_other",
    "connection_without_foreign_keys_refused",
    "the_posting_api_works",
    "the_state_machine_holds",
    "flush_still_empties_the_ledger",
    "verify_reports_sums_past_bigint",
)


@pytest.fixture(scope="module")
def seal_results(tmp_path_factory):
    return sqlite_case_results("sqlite_seal_check.py", tmp_path_factory.mktemp("sqlite_seal"), timeout=600)


@pytest.mark.parametrize("case", CASES)
def test_sqlite_journal_seal(seal_results, case):
    assert seal_results.get(case) == "ok", seal_results.get(case, f"{case} did not run")


def test_every_case_is_asserted(seal_results):
    assert sorted(seal_results) == sorted(CASES)
