"""ledger_verify on two connections (PostgreSQL, outside a transaction): the same findings as one
connection, all on the snapshot the first connection exports. Real commits, real threads."""

import json
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from ledger.models import Account, Entry
from ledger.types import AccountType
from ledger.verify import CHECKS, ledger_verify
from tests.ledger.conftest import make_account
from tests.ledger.test_verify_checks import _account, _fund, _raw_journal

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def wallet(owner, now):
    key = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    _fund(owner, now, key, 500)
    return _account(key), _account(make_account(owner, "other"))


def test_two_connections_find_exactly_what_one_finds(wallet):
    account, other = wallet
    with transaction.atomic():  # a limit breach (balanced, committed): the replay overdraws the wallet
        _raw_journal([(account.id, 900, 2, False), (other.id, -900, 1, False)])
    with transaction.atomic():  # a version gap on `other`
        _raw_journal([(other.id, 5, 3, False), (account.id, -5, 3, False)])
    with transaction.atomic():
        empty = _raw_journal([])
    gap = Entry.objects.get(account_id=other.id, version=3).id

    one, two = ledger_verify(workers=1), ledger_verify(workers=2)

    assert (one.connections, two.connections) == (1, 2)
    assert two.problems == one.problems
    assert list(two.problems) == list(CHECKS)  # every check answered once, in the usual order
    assert two.problems["limit_breaches"] == [account.id]
    assert two.problems["entries_replay_mismatch"] == [gap]
    assert two.problems["journals_without_entries"] == [empty]
    assert set(two.problems["projection_mismatch"]) == {account.id, other.id}
    assert (two.entries, two.journals, two.accounts) == (one.entries, one.journals, one.accounts)
    assert ledger_verify(workers=2, checks=("limit_breaches",)).problems == {"limit_breaches": [account.id]}


def _waiting_on_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def test_a_commit_while_the_checks_wait_is_seen_by_neither_connection(wallet):
    """Both connections read the snapshot taken when the run began: a projection tampered with and
    committed while their statements wait for a lock is not in the report (a connection reading its
    own, later snapshot would report it)."""
    account, _ = wallet
    entries = Entry.objects.count()
    locked, go, done = threading.Event(), threading.Event(), threading.Event()
    reports, errors = [], []

    def holder() -> None:
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("LOCK TABLE ledger_entry IN ACCESS EXCLUSIVE MODE")
                    locked.set()
                    go.wait(30)
                    cursor.execute("UPDATE ledger_account SET balance = balance - 7 WHERE id = %s", [account.id])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()
            done.set()

    def verifier() -> None:
        try:
            reports.append(ledger_verify(workers=2))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threading.Thread(target=holder).start()
    assert locked.wait(30)
    run = threading.Thread(target=verifier)
    run.start()
    deadline = time.monotonic() + 30
    while _waiting_on_locks() < 2 and time.monotonic() < deadline:  # both connections wait on the lock
        time.sleep(0.01)
    waiting = _waiting_on_locks()
    go.set()
    assert done.wait(30)
    run.join(60)
    assert not errors, errors
    assert waiting == 2
    (report,) = reports
    assert report.ok, report.problems
    assert report.entries == entries
    # the tampering was real: a run after it finds it
    assert ledger_verify(workers=2).problems["projection_mismatch"] == [account.id]
    assert Account.objects.get(id=account.id).balance == -507


def test_the_command_shares_the_checks_and_refuses_no_workers(wallet, capsys):
    call_command("ledger_verify", "--json", "--workers", "2")
    body = json.loads(capsys.readouterr().out)
    assert (body["ok"], body["connections"]) == (True, 2)
    call_command("ledger_verify", "--json", "--workers", "1")
    assert json.loads(capsys.readouterr().out)["connections"] == 1
    with pytest.raises(CommandError, match="--workers must be at least 1"):
        call_command("ledger_verify", "--workers", "0")
