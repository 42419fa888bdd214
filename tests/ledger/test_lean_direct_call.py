"""The direct libpq call of ledger_post_one() (engine._execute_lean, docs/decisions/ledger-lean-single-journal.md,
"Session 5"): taken only where it changes nothing but the CPU, on PostgreSQL."""

import psycopg
import pytest
from django.db import OperationalError, ProgrammingError, connection, transaction
from django.test.utils import CaptureQueriesContext

from ledger import engine, selectors, services
from ledger.errors import InvalidPostingError
from ledger.models import Journal
from ledger.types import transfer_lines
from ledger.verify import ledger_verify
from tests.ledger.conftest import make_account

pytestmark = pytest.mark.django_db(transaction=True)


def _post(reference, a, b, amount, now):
    return services.journal_post(
        reference=reference, lines=transfer_lines(debit=a, credit=b, amount=amount), occurred_at=now
    )


def _direct_calls():
    return engine.stats["direct"]


def test_unobserved_autocommit_postings_go_direct_and_match_the_cursor_path(owner, now):
    a, b = make_account(owner, "wallet_a"), make_account(owner, "wallet_b")
    first = _post(f"{owner}:1", a, b, 100, now)  # the accounts get cached
    before = _direct_calls()
    second = _post(f"{owner}:2", a, b, 40, now)
    assert _direct_calls() == before + 1
    assert second.created and second.journal_id == Journal.objects.get(reference=f"{owner}:2").id
    assert second.journal_id > first.journal_id
    # same reference, same lines: the first journal; the same through Django's cursor
    again = _post(f"{owner}:2", a, b, 40, now)
    assert again.status.value == "exists" and again.journal_id == second.journal_id
    with CaptureQueriesContext(connection) as ctx:
        seen = _post(f"{owner}:2", a, b, 40, now)
    assert len(ctx.captured_queries) == 1 and seen == again
    assert _direct_calls() == before + 2  # the observed call went through the cursor
    assert selectors.account_balance(key=a).posted == 140 and selectors.account_balance(key=b).posted == -140
    assert ledger_verify().ok


def test_a_direct_call_inside_a_transaction_is_part_of_it(owner, now):
    a, b = make_account(owner, "wallet_a"), make_account(owner, "wallet_b")
    _post(f"{owner}:warm", a, b, 1, now)
    before = _direct_calls()
    # first statement of the transaction: psycopg must send its BEGIN, so the cursor takes it
    with pytest.raises(RuntimeError), transaction.atomic():
        _post(f"{owner}:1", a, b, 10, now)
        assert _direct_calls() == before
        _post(f"{owner}:2", a, b, 20, now)  # the transaction is open: direct
        assert _direct_calls() == before + 1
        raise RuntimeError("roll back")
    assert not Journal.objects.filter(reference__in=[f"{owner}:1", f"{owner}:2"]).exists()
    assert selectors.account_balance(key=a).posted == 1
    with transaction.atomic():
        Journal.objects.exists()  # BEGIN sent
        _post(f"{owner}:3", a, b, 30, now)
        assert connection.in_atomic_block and _direct_calls() == before + 2
    assert selectors.account_balance(key=a).posted == 31
    assert ledger_verify().ok


def _deallocate_behind_psycopgs_back():
    """DEALLOCATE ALL sent through libpq itself: psycopg does not see it (its cache keeps its entries)."""
    connection.connection.pgconn.exec_(b"DEALLOCATE ALL")


def test_a_deallocated_statement_is_prepared_again(owner, now):
    a, b = make_account(owner, "wallet_a"), make_account(owner, "wallet_b")
    _post(f"{owner}:warm", a, b, 1, now)
    _deallocate_behind_psycopgs_back()
    before = _direct_calls()
    assert _post(f"{owner}:1", a, b, 5, now).created  # autocommit: prepared again, retried
    assert _direct_calls() == before + 1
    # inside a transaction the error cannot be retried (the transaction is aborted): raised as
    # Django's error with psycopg's as its cause, and the next call prepares the statement again
    with pytest.raises(ProgrammingError) as raised, transaction.atomic():
        Journal.objects.exists()  # BEGIN sent: the posting goes direct
        _deallocate_behind_psycopgs_back()
        _post(f"{owner}:2", a, b, 7, now)
    assert isinstance(raised.value.__cause__, psycopg.errors.InvalidSqlStatementName)
    assert _post(f"{owner}:3", a, b, 9, now).created
    assert selectors.account_balance(key=a).posted == 15
    assert not Journal.objects.filter(reference=f"{owner}:2").exists()


def test_a_deallocate_psycopg_sees_or_sends_is_followed_inside_a_transaction(owner, now):
    """With prepared statements on (DB_PREPARE_THRESHOLD), psycopg sends DEALLOCATE ALL after any
    ROLLBACK (a savepoint's included) while it holds statements of its own, and clears its cache on a
    DEALLOCATE ALL it sees: the posting statement, entered in that cache, is prepared again before
    the next call — even inside a transaction, where a missing statement would abort it."""
    a, b = make_account(owner, "wallet_a"), make_account(owner, "wallet_b")
    _post(f"{owner}:warm", a, b, 1, now)
    assert connection.connection.prepare_threshold is not None  # the settings' default
    for n in range(8):  # psycopg prepares a statement of its own (threshold 5)
        Journal.objects.filter(reference=f"{owner}:{n}").exists()
    with transaction.atomic():
        Journal.objects.exists()
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")  # seen by psycopg
        assert _post(f"{owner}:1", a, b, 5, now).created
        with pytest.raises(RuntimeError), transaction.atomic():  # a savepoint rolled back
            Journal.objects.filter(reference=f"{owner}:x").exists()
            raise RuntimeError("roll back to the savepoint")
        before = _direct_calls()
        assert _post(f"{owner}:2", a, b, 7, now).created
        assert _direct_calls() == before + 1
    assert selectors.account_balance(key=a).posted == 13
    assert ledger_verify().ok


def test_a_nul_in_a_text_is_refused_as_before_never_cut_short(owner, now):
    a, b = make_account(owner, "wallet_a"), make_account(owner, "wallet_b")
    _post(f"{owner}:warm", a, b, 1, now)
    before = _direct_calls()
    with pytest.raises(InvalidPostingError):  # (before validate() refused it: psycopg's DataError)
        _post(f"{owner}:1\x00tail", a, b, 5, now)
    assert _direct_calls() == before
    assert not Journal.objects.filter(reference__startswith=f"{owner}:1").exists()


def test_a_lost_connection_raises_djangos_error(owner, now):
    a, b = make_account(owner, "wallet_a"), make_account(owner, "wallet_b")
    _post(f"{owner}:warm", a, b, 1, now)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    with psycopg.connect(connection.connection.info.dsn, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    try:
        with pytest.raises(OperationalError):
            _post(f"{owner}:1", a, b, 5, now)
        assert connection.errors_occurred  # Django will check the connection before reusing it
    finally:
        connection.close()
    assert _post(f"{owner}:2", a, b, 5, now).created
