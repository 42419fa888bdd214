"""Lookups by booking instant at exact boundaries (tests/ledger/booked_at_check.py), on both
engines; SQLite (where they failed): sqlite_embedded_check.py."""

import pytest

from tests.ledger.booked_at_check import (
    check_a_balance_at_an_instant_counts_the_journals_booked_then,
    check_a_cursor_walk_lists_every_entry_once,
)


@pytest.mark.django_db(transaction=True)  # the first page lists only what committed before the horizon
@pytest.mark.parametrize("ledger_engine", ["auto", "python"])
def test_a_cursor_walk_lists_every_entry_once(ledger_engine, settings):
    settings.LEDGER_ENGINE = ledger_engine
    check_a_cursor_walk_lists_every_entry_once()


@pytest.mark.django_db
@pytest.mark.parametrize("ledger_engine", ["auto", "python"])
def test_a_balance_at_an_instant_counts_the_journals_booked_then(ledger_engine, settings):
    settings.LEDGER_ENGINE = ledger_engine
    check_a_balance_at_an_instant_counts_the_journals_booked_then()
