"""PostgreSQL: entries are checked once per INSERT statement (migration 0005), and raw SQL still
cannot commit an unbalanced journal, an entry in another currency than its account's, or an entry
naming no account or no journal, however the entries arrive (several statements, savepoints, SET
CONSTRAINTS ... IMMEDIATE, COPY, MERGE, tampering with the check rows).

`SET CONSTRAINTS ALL IMMEDIATE` runs the commit-time checks where a test cannot commit (the test's
transaction is rolled back); the tests marked transaction=True commit for real."""

import uuid

import psycopg
import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from ledger import services
from ledger.models import Account, Entry, Journal
from ledger.types import JournalRequest, PostingLine
from tests.ledger.conftest import make_account

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL invariants")

ENTRY = (
    "INSERT INTO ledger_entry (journal_id, account_id, currency, amount, balance_after, version, is_pending)"
    " VALUES (%s, %s, %s, %s, 0, %s, false)"
)



def _copy_entry(c, row):
    """One entry row written by COPY on the cursor's psycopg cursor (no INSERT statement)."""
    with c.cursor.copy(
        "COPY ledger_entry (journal_id, account_id, currency, amount, balance_after, version, is_pending) FROM STDIN"
    ) as copy:
        copy.write_row(row)

def _accounts(owner):
    make_account(owner, "a")
    make_account(owner, "b")
    return (
        Account.objects.get(owner=owner, code="a").id,
        Account.objects.get(owner=owner, code="b").id,
    )


def _journal(cursor, journal_id=None) -> int:
    if journal_id is None:
        cursor.execute(
            "INSERT INTO ledger_journal (reference, kind, phase, memo, metadata, occurred_at)"
            " VALUES (%s, 'adjustment', 0, '', '{}', now()) RETURNING id",
            ["raw:" + uuid.uuid4().hex],
        )
        return cursor.fetchone()[0]
    cursor.execute(
        "INSERT INTO ledger_journal (id, reference, kind, phase, memo, metadata, occurred_at)"
        " VALUES (%s, %s, 'adjustment', 0, '', '{}', now())",
        [journal_id, "raw:" + uuid.uuid4().hex],
    )
    return journal_id


def _entry(cursor, journal_id, account_id, amount, version, currency="EUR"):
    cursor.execute(ENTRY, [journal_id, account_id, currency, amount, version])


def _checks_waiting() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ledger_journal_check")
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_posting_functions_leave_no_commit_time_check(owner, now):
    """The fast path: a posted journal exists and balances when its entries' statement ends."""
    a, b = make_account(owner, "a"), make_account(owner, "b")
    with transaction.atomic():
        services.journal_post(reference=f"one:{owner}", lines=(PostingLine(a, 5), PostingLine(b, -5)), occurred_at=now)
        services.journal_post_many(
            [
                JournalRequest(
                    reference=f"many:{owner}:{i}", lines=(PostingLine(a, i), PostingLine(b, -i)), occurred_at=now
                )
                for i in range(1, 4)
            ]
        )
        assert _checks_waiting() == 0
    assert Journal.objects.filter(reference__startswith=f"many:{owner}:").count() == 3


@pytest.mark.django_db
def test_entries_over_several_statements_balanced_at_the_end_pass(owner):
    a, b = _accounts(owner)
    with transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        _entry(c, jid, a, 100, 1)
        assert _checks_waiting() == 1  # unbalanced at the end of that statement: checked at commit
        _entry(c, jid, b, -60, 1)
        _entry(c, jid, b, -40, 2)
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")
        assert _checks_waiting() == 0  # checked, and its row gone
    assert Entry.objects.filter(journal_id=jid).count() == 3


@pytest.mark.django_db
def test_entries_before_their_journal_pass_when_it_follows(owner):
    a, b = _accounts(owner)
    with transaction.atomic(), connection.cursor() as c:
        c.execute("SELECT nextval(pg_get_serial_sequence('ledger_journal', 'id'))")
        jid = c.fetchone()[0]
        _entry(c, jid, a, 100, 1)
        _entry(c, jid, b, -100, 1)
        _journal(c, jid)
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
def test_entries_of_a_journal_that_never_comes_fail(owner):
    a, b = _accounts(owner)
    with pytest.raises(IntegrityError, match="names no journal"), transaction.atomic(), connection.cursor() as c:
        c.execute(
            ENTRY.replace(
                "VALUES (%s, %s, %s, %s, 0, %s, false)",
                "VALUES (-7, %s, 'EUR', 5, 0, 1, false), (-7, %s, 'EUR', -5, 0, 1, false)",
            ),
            [a, b],
        )
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
def test_an_unbalancing_statement_after_a_balanced_one_fails(owner):
    a, b = _accounts(owner)
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        c.execute(
            ENTRY.replace(
                "VALUES (%s, %s, %s, %s, 0, %s, false)",
                "VALUES (%s, %s, 'EUR', 5, 0, 1, false), (%s, %s, 'EUR', -5, 0, 1, false)",
            ),
            [jid, a, jid, b],
        )
        assert _checks_waiting() == 0
        _entry(c, jid, a, 1, 2)
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
def test_entries_added_after_the_checks_ran_are_checked_again(owner):
    """SET CONSTRAINTS ... IMMEDIATE runs the pending checks once; a later statement is checked anew."""
    a, b = _accounts(owner)
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        _entry(c, jid, a, 5, 1)
        _entry(c, jid, b, -5, 1)
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")  # passes
        _entry(c, jid, a, 3, 2)  # now unbalanced: checked again (immediately, the mode is IMMEDIATE now)
        c.execute("SET CONSTRAINTS ALL DEFERRED")
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
def test_a_balancing_statement_rolled_back_to_a_savepoint_does_not_count(owner):
    a, b = _accounts(owner)
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        _entry(c, jid, a, 5, 1)
        sid = transaction.savepoint()
        _entry(c, jid, b, -5, 1)
        assert _checks_waiting() == 1  # the first statement's row stays
        transaction.savepoint_rollback(sid)
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
def test_an_unbalanced_statement_rolled_back_to_a_savepoint_leaves_nothing(owner):
    a, b = _accounts(owner)
    with transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        c.execute(
            ENTRY.replace(
                "VALUES (%s, %s, %s, %s, 0, %s, false)",
                "VALUES (%s, %s, 'EUR', 5, 0, 1, false), (%s, %s, 'EUR', -5, 0, 1, false)",
            ),
            [jid, a, jid, b],
        )
        sid = transaction.savepoint()
        _entry(c, jid, a, 9, 2)
        transaction.savepoint_rollback(sid)
        assert _checks_waiting() == 0
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert Entry.objects.filter(journal_id=jid).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    "tamper",
    ["DELETE FROM ledger_journal_check", "UPDATE ledger_journal_check SET journal_id = -1"],
)
def test_tampering_with_the_check_rows_does_not_skip_the_check(owner, tamper):
    a, _ = _accounts(owner)
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        _entry(c, jid, a, 5, 1)
        c.execute(tamper)
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
def test_truncating_the_check_rows_is_refused_while_checks_wait(owner):
    a, _ = _accounts(owner)
    with pytest.raises(DatabaseError, match="pending trigger events"), transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        _entry(c, jid, a, 5, 1)
        c.execute("TRUNCATE ledger_journal_check")


@pytest.mark.django_db
def test_merge_is_checked(owner):
    a, _ = _accounts(owner)
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        c.execute(
            "MERGE INTO ledger_entry e USING (SELECT %s::bigint AS j, %s::bigint AS a) s ON false"
            " WHEN NOT MATCHED THEN INSERT (journal_id, account_id, currency, amount, balance_after, version,"
            " is_pending) VALUES (s.j, s.a, 'EUR', 5, 0, 1, false)",
            [jid, a],
        )
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
def test_copy_is_checked(owner):
    a, _ = _accounts(owner)
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        _copy_entry(c, (jid, a, "EUR", 5, 0, 1, False))
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
def test_copy_in_another_currency_is_refused(owner):
    a, _ = _accounts(owner)
    # psycopg's own error: COPY goes to psycopg's cursor, under Django's wrapper
    with (
        pytest.raises(psycopg.errors.ForeignKeyViolation, match="the account in EUR"),
        transaction.atomic(),
        connection.cursor() as c,
    ):
        jid = _journal(c)
        _copy_entry(c, (jid, a, "USD", 5, 0, 1, False))


@pytest.mark.django_db
def test_one_wrong_currency_among_many_rows_is_refused_at_once(owner):
    a, b = _accounts(owner)
    make_account(owner, "u", currency="USD")
    with pytest.raises(IntegrityError, match="the account in EUR"), transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        c.execute(
            ENTRY.replace(
                "VALUES (%s, %s, %s, %s, 0, %s, false)",
                "VALUES (%s, %s, 'EUR', 5, 0, 1, false), (%s, %s, 'USD', -5, 0, 1, false)",
            ),
            [jid, a, jid, b],
        )


@pytest.mark.django_db
def test_an_entry_naming_no_account_is_refused_at_once(owner):
    with pytest.raises(IntegrityError, match="no such account"), transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        _entry(c, jid, -42, 5, 1)


@pytest.mark.django_db
def test_an_accounts_id_never_changes(owner):
    a, _ = _accounts(owner)
    with pytest.raises(DatabaseError, match="identity never changes"), transaction.atomic(), connection.cursor() as c:
        c.execute("UPDATE ledger_account SET id = -id WHERE id = %s", [a])


@pytest.mark.django_db(transaction=True)
def test_an_unbalanced_append_to_a_committed_journal_fails_at_commit(owner, now):
    a, b = make_account(owner, "a"), make_account(owner, "b")
    result = services.journal_post(
        reference=f"old:{owner}", lines=(PostingLine(a, 5), PostingLine(b, -5)), occurred_at=now
    )
    account = Account.objects.get(owner=owner, code="a")
    with pytest.raises(IntegrityError, match="does not balance"):
        with transaction.atomic(), connection.cursor() as c:
            _entry(c, result.journal_id, account.id, 1, 2)
    assert Entry.objects.filter(journal_id=result.journal_id).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_journal_over_several_statements_commits_and_leaves_no_check_row(owner):
    a, b = _accounts(owner)
    with transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        _entry(c, jid, a, 7, 1)
        _entry(c, jid, b, -7, 1)
    assert Entry.objects.filter(journal_id=jid).count() == 2
    assert _checks_waiting() == 0


# --- Session 7 (migration 0006): four CHECK constraints moved into triggers on PostgreSQL ---------


def _check_constraints(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT conname FROM pg_constraint WHERE contype = 'c' AND conrelid = %s::regclass", [table])
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.django_db
def test_the_moved_checks_are_triggers_and_the_limits_stay_checks():
    assert _check_constraints("ledger_entry") == set()
    assert _check_constraints("ledger_account") == {
        "ledger_account_pending_gte_0",
        "ledger_account_debits_le_credits",
        "ledger_account_credits_le_debits",
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("amount", "version", "message"),
    [(0, 1, "zero amount"), (5, 0, "versions start at 1"), (5, -3, "versions start at 1")],
)
def test_a_zero_amount_or_a_version_below_one_is_refused_at_once(owner, amount, version, message):
    a, _ = _accounts(owner)
    with pytest.raises(IntegrityError, match=message), transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        _entry(c, jid, a, amount, version)


@pytest.mark.django_db
def test_one_zero_amount_among_many_rows_is_refused(owner):
    a, b = _accounts(owner)
    with pytest.raises(IntegrityError, match="zero amount"), transaction.atomic(), connection.cursor() as c:
        jid = _journal(c)
        c.execute(
            ENTRY.replace(
                "VALUES (%s, %s, %s, %s, 0, %s, false)",
                "VALUES (%s, %s, 'EUR', 5, 0, 1, false), (%s, %s, 'EUR', 0, 0, 2, false),"
                " (%s, %s, 'EUR', -5, 0, 1, false)",
            ),
            [jid, a, jid, a, jid, b],
        )


@pytest.mark.django_db
def test_a_zero_amount_by_copy_is_refused(owner):
    a, _ = _accounts(owner)
    with (
        pytest.raises(psycopg.errors.CheckViolation, match="zero amount"),
        transaction.atomic(),
        connection.cursor() as c,
    ):
        jid = _journal(c)
        _copy_entry(c, (jid, a, "EUR", 0, 0, 1, False))


ACCOUNT = (
    "INSERT INTO ledger_account (owner, code, currency, type, debits_must_not_exceed_credits,"
    " credits_must_not_exceed_debits, hot, status, shards, balance, debits_pending, credits_pending, version)"
    " VALUES (%s, 'raw', %s, 'asset', %s, %s, %s, 'active', 0, 0, 0, 0, 0)"
)


@pytest.mark.django_db
@pytest.mark.parametrize("currency", ["eur", "E1R", "EU", "€UR"])
def test_a_raw_account_in_a_currency_that_is_no_iso_code_is_refused(owner, currency):
    with pytest.raises(IntegrityError, match="not an ISO 4217 code"), transaction.atomic(), connection.cursor() as c:
        c.execute(ACCOUNT, [owner, currency, False, False, False])


@pytest.mark.django_db
@pytest.mark.parametrize(("dmnec", "cmned"), [(True, False), (False, True)])
def test_a_raw_hot_account_with_a_limit_is_refused(owner, dmnec, cmned):
    with pytest.raises(IntegrityError, match="hot account has no balance limit"), transaction.atomic():
        with connection.cursor() as c:
            c.execute(ACCOUNT, [owner, "EUR", dmnec, cmned, True])


@pytest.mark.django_db
def test_a_limit_set_later_on_a_hot_account_is_refused_and_on_another_account_allowed(owner):
    with transaction.atomic(), connection.cursor() as c:
        c.execute(ACCOUNT + " RETURNING id", [owner, "EUR", False, False, True])
        hot_id = c.fetchone()[0]
        c.execute(ACCOUNT.replace("'raw'", "'plain'") + " RETURNING id", [owner, "EUR", False, False, False])
        plain_id = c.fetchone()[0]
    with pytest.raises(IntegrityError, match="hot account has no balance limit"), transaction.atomic():
        with connection.cursor() as c:
            c.execute("UPDATE ledger_account SET debits_must_not_exceed_credits = true WHERE id = %s", [hot_id])
    with connection.cursor() as c:
        c.execute("UPDATE ledger_account SET credits_must_not_exceed_debits = true WHERE id = %s", [plain_id])
    assert Account.objects.get(id=plain_id).credits_must_not_exceed_debits


@pytest.mark.django_db
def test_the_single_posting_function_never_scans_accounts_sequentially():
    """ledger_post_one() reads a few rows by id or key; on a small ledger_account (the bench's thousand
    accounts) the generic plan of its lock chose a sequential scan of the whole table (session 7)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT proconfig FROM pg_proc WHERE proname = 'ledger_post_one'")
        (config,) = cursor.fetchone()
    assert {"enable_seqscan=off", "enable_bitmapscan=off", "plan_cache_mode=force_generic_plan"} <= set(config)
