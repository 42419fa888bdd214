"""A hot account's balance past the 64-bit range while each shard fits: read exactly on PostgreSQL and
on SQLite (tests/ledger/hot_fold_check.py)."""

import pytest

from tests.ledger.conftest import sqlite_check_ok
from tests.ledger.hot_fold_check import check_a_hot_balance_past_64_bits_is_read_exactly


@pytest.mark.django_db
def test_a_hot_balance_past_64_bits_is_read_exactly():
    check_a_hot_balance_past_64_bits_is_read_exactly()


def test_the_same_on_sqlite(tmp_path):
    sqlite_check_ok("sqlite_hot_fold_check.py", tmp_path)
