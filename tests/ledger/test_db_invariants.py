"""The database itself refuses what the ledger forbids, whoever writes (raw SQL here)."""

import uuid

import pytest
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction

from ledger import services
from ledger.models import Account, Entry
from ledger.types import Accounts, AccountType, transfer_lines
from ledger.verify import ledger_verify
from tests.ledger.conftest import make_account


def _post(owner, now, amount=100):
    src, dst = Accounts.merchant_pending(owner, "EUR"), Accounts.merchant_available(owner, "EUR")
    return services.journal_post(
        reference=f"t:{owner}:{uuid.uuid4().hex}",
        lines=transfer_lines(debit=src, credit=dst, amount=amount),
        occurred_at=now,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_entry SET amount = amount + 1 WHERE journal_id = %s",
        "DELETE FROM ledger_entry WHERE journal_id = %s",
        "UPDATE ledger_journal SET memo = 'x' WHERE id = %s",
        "DELETE FROM ledger_journal WHERE id = %s",
    ],
)
def test_raw_update_and_delete_are_refused(owner, now, sql):
    result = _post(owner, now)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [result.journal_id])
    assert Entry.objects.filter(journal_id=result.journal_id).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("table", ["ledger_entry", "ledger_journal", "ledger_account"])
def test_raw_truncate_is_refused_for_the_application_role(owner, now, table):
    _post(owner, now)
    role = "ledger_app_" + uuid.uuid4().hex[:8]
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT ALL ON ledger_entry, ledger_journal, ledger_account TO {role}")
        cursor.execute(f"SET LOCAL ROLE {role}")
        with pytest.raises(DatabaseError, match="TRUNCATE"), transaction.atomic():
            cursor.execute(f"TRUNCATE {table} CASCADE")
        cursor.execute("RESET ROLE")
    assert Entry.objects.exists()


@pytest.mark.django_db
def test_accounts_are_never_deleted_nor_renamed(owner, now):
    _post(owner, now)
    account = Account.objects.get(owner=owner, code="merchant_available")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM ledger_account WHERE id = %s", [account.id])
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE ledger_account SET currency = 'USD' WHERE id = %s", [account.id])


def _raw_unbalanced(cursor, account_id: int, currency: str = "EUR") -> None:
    cursor.execute(
        "INSERT INTO ledger_journal (reference, kind, phase, memo, metadata, occurred_at)"
        " VALUES (%s, 'adjustment', 0, '', '{}', now()) RETURNING id",
        ["raw:" + uuid.uuid4().hex],
    )
    (journal_id,) = cursor.fetchone()
    cursor.execute(
        "INSERT INTO ledger_entry (journal_id, account_id, currency, amount, balance_after, version, is_pending)"
        " VALUES (%s, %s, %s, 100, 100, 1, false)",
        [journal_id, account_id, currency],
    )


@pytest.mark.django_db(transaction=True)
def test_unbalanced_raw_insert_fails_at_commit(owner):
    key = make_account(owner, "raw")
    account = Account.objects.get(owner=owner, code="raw")
    with pytest.raises(IntegrityError, match="does not balance"):
        with transaction.atomic(), connection.cursor() as cursor:
            _raw_unbalanced(cursor, account.id)
            # the insert itself is accepted: the check is deferred to COMMIT
            cursor.execute("SELECT count(*) FROM ledger_entry WHERE account_id = %s", [account.id])
            assert cursor.fetchone()[0] == 1
    assert not Entry.objects.filter(account__owner=key.owner).exists()


@pytest.mark.django_db
def test_unbalanced_raw_insert_fails_when_constraints_are_checked(owner):
    make_account(owner, "raw")
    account = Account.objects.get(owner=owner, code="raw")
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic(), connection.cursor() as c:
        _raw_unbalanced(c, account.id)
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
def test_entry_currency_must_be_its_accounts(owner):
    make_account(owner, "raw")
    account = Account.objects.get(owner=owner, code="raw")
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        _raw_unbalanced(cursor, account.id, currency="USD")


@pytest.mark.django_db
def test_limit_holds_even_for_a_raw_projection_update(owner, now):
    make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE ledger_account SET balance = 1 WHERE owner = %s AND code = 'wallet'", [owner])


@pytest.mark.django_db
def test_verify_finds_a_tampered_projection_and_rebuild_repairs_it(owner, now, capsys):
    _post(owner, now)
    account = Account.objects.get(owner=owner, code="merchant_available")
    Account.objects.filter(id=account.id).update(balance=account.balance + 1)
    report = ledger_verify()
    assert report.problems["projection_mismatch"] == [account.id]
    with pytest.raises(SystemExit) as exit_:
        call_command("ledger_verify")
    assert exit_.value.code == 1
    assert str(account.id) in capsys.readouterr().out
    call_command("ledger_rebuild")
    assert ledger_verify().ok
    call_command("ledger_verify")  # exits 0: no SystemExit
    assert "OK" in capsys.readouterr().out


@pytest.mark.django_db
def test_verify_finds_a_bad_balance_after(owner, now):
    _post(owner, now)
    account = Account.objects.get(owner=owner, code="merchant_available")
    with connection.cursor() as cursor:  # a second, well-balanced journal whose balance_after lies
        cursor.execute(
            "INSERT INTO ledger_journal (reference, kind, phase, memo, metadata, occurred_at)"
            " VALUES (%s, 'adjustment', 0, '', '{}', now()) RETURNING id",
            ["raw:" + uuid.uuid4().hex],
        )
        (jid,) = cursor.fetchone()
        other = Account.objects.get(owner=owner, code="merchant_pending")
        cursor.execute(
            "INSERT INTO ledger_entry (journal_id, account_id, currency, amount, balance_after, version, is_pending)"
            " VALUES (%s, %s, 'EUR', -5, 999, 2, false), (%s, %s, 'EUR', 5, 105, 2, false) RETURNING id",
            [jid, account.id, jid, other.id],
        )
        bad_id = cursor.fetchone()[0]
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    report = ledger_verify()
    assert bad_id in report.problems["entries_replay_mismatch"]
    assert account.id in report.problems["projection_mismatch"]


@pytest.mark.django_db
def test_entry_must_name_an_existing_journal(owner):
    make_account(owner, "raw")
    account = Account.objects.get(owner=owner, code="raw")
    with pytest.raises(IntegrityError, match="names no journal"), transaction.atomic(), connection.cursor() as c:
        c.execute(
            "INSERT INTO ledger_entry (journal_id, account_id, currency, amount, balance_after, version, is_pending)"
            " VALUES (-1, %s, 'EUR', 5, 5, 1, false), (-1, %s, 'EUR', -5, 0, 2, false)",
            [account.id, account.id],
        )
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")
