"""A resolved pending journal is answered `pending_already_resolved` before anything else is
checked (tests/ledger/pending_resolved_check.py), on both engines; SQLite: sqlite_embedded_check.py.

What was wrong: the engines found a second resolution only when they came to write it (the unique
index on `pending_id`), after the expiry, frozen-account and limit checks. A post or void of a
pending journal already posted was refused with `account_frozen` (AccountFrozenError, when an
account of it had been frozen since) or `pending_expired` (once its expiry had passed): the caller
is told to unfreeze an account or that it was too late, when the journal was in fact posted."""

import pytest

from tests.ledger.pending_resolved_check import check_a_resolved_pending_journal_answers_already_resolved


@pytest.mark.django_db
@pytest.mark.parametrize("ledger_engine", ["auto", "python"])
def test_a_resolved_pending_journal_answers_already_resolved(ledger_engine, settings):
    settings.LEDGER_ENGINE = ledger_engine
    check_a_resolved_pending_journal_answers_already_resolved()
