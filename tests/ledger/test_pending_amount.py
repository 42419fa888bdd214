"""A post moves no more than its pending journal reserved, whatever calls the engine
(tests/ledger/pending_amount_check.py): PostgreSQL's ledger_post_batch and the Python engine; the
SQLite run is in sqlite_embedded_check.py."""

import pytest

from tests.ledger.pending_amount_check import check_a_post_moves_no_more_than_reserved


@pytest.mark.django_db
@pytest.mark.parametrize("ledger_engine", ["auto", "python"])
def test_a_post_moves_no_more_than_reserved(ledger_engine, settings):
    settings.LEDGER_ENGINE = ledger_engine
    check_a_post_moves_no_more_than_reserved()
