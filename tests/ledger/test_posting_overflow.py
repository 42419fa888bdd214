"""Postings past the 64-bit range are refused as `overflow` (tests/ledger/overflow_check.py), on
PostgreSQL (the posting functions, and the Python engine) and on SQLite; a hot account's balance
at a version is a clear error, not "has no version"."""

import pytest

from tests.ledger.conftest import sqlite_check_ok
from tests.ledger.overflow_check import (
    check_a_hot_account_has_no_single_version,
    check_a_posting_past_bigint_is_refused_as_overflow,
)


@pytest.mark.django_db
@pytest.mark.parametrize("ledger_engine", ["auto", "python"])
def test_a_posting_past_bigint_is_refused_as_overflow(ledger_engine, settings):
    settings.LEDGER_ENGINE = ledger_engine
    check_a_posting_past_bigint_is_refused_as_overflow()


@pytest.mark.django_db
def test_a_hot_account_has_no_single_version():
    check_a_hot_account_has_no_single_version()


def test_the_same_on_sqlite(tmp_path):
    sqlite_check_ok("sqlite_overflow_check.py", tmp_path)
