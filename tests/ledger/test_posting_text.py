"""Text no database keeps alike is refused up front, on both engines
(tests/ledger/posting_text_check.py); SQLite: sqlite_embedded_check.py.

What was wrong: `validate()` let through a NUL character in a journal's reference, kind, memo or
metadata, and NaN or Infinity in its metadata (json.dumps writes `NaN`, which is no JSON). SQLite
stored them; PostgreSQL refused them with a raw DataError (text cannot hold NUL, jsonb neither NUL
nor NaN), not the ledger's typed InvalidPostingError: the same posting was a journal on the
embedded default and an untyped server error (a 500) in production."""

import pytest

from tests.ledger.posting_text_check import check_text_a_database_cannot_store_is_refused_alike


@pytest.mark.django_db
@pytest.mark.parametrize("ledger_engine", ["auto", "python"])
def test_text_a_database_cannot_store_is_refused_alike(ledger_engine, settings):
    settings.LEDGER_ENGINE = ledger_engine
    check_text_a_database_cannot_store_is_refused_alike()
