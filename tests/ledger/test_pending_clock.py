"""One clock, the database's, decides a pending journal's expiry (tests/ledger/pending_clock_check.py),
on both engines; SQLite: sqlite_embedded_check.py."""

import pytest

from tests.ledger.pending_clock_check import (
    check_an_app_clock_ahead_does_not_expire_a_hold_early,
    check_an_app_clock_behind_expires_a_hold_on_time,
)


@pytest.mark.django_db
@pytest.mark.parametrize("ledger_engine", ["auto", "python"])
def test_an_app_clock_ahead_of_the_database_does_not_expire_a_hold_early(ledger_engine, settings):
    settings.LEDGER_ENGINE = ledger_engine
    check_an_app_clock_ahead_does_not_expire_a_hold_early()


@pytest.mark.django_db
@pytest.mark.parametrize("ledger_engine", ["auto", "python"])
def test_an_app_clock_behind_the_database_expires_a_hold_on_time(ledger_engine, settings):
    settings.LEDGER_ENGINE = ledger_engine
    check_an_app_clock_behind_expires_a_hold_on_time()
