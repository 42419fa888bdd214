"""ledger_verify reports entries whose sums pass the bigint range, never crashes on them
(tests/ledger/verify_overflow_check.py); SQLite: sqlite_seal_check.py."""

import pytest

from tests.ledger.verify_overflow_check import check_verify_reports_sums_past_bigint


@pytest.mark.django_db
def test_verify_reports_sums_past_bigint_and_exits_1():
    check_verify_reports_sums_past_bigint()
