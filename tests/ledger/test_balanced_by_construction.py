"""PostgreSQL: the posting functions refuse what the entry statement trigger refused, themselves
(docs/decisions/database-roles.md, "Session 11"). The trigger skips their INSERTs (they run as
payera_ledger_writer, a NOLOGIN role), and the runtime role may EXECUTE them directly, past the
Python validation: a zero amount, lines that do not sum to zero per currency and an entry in another
currency than its account row's are refused with the trigger's SQLSTATE and constraint name, and
nothing is written. Every other role's raw INSERT is still checked by the trigger
(tests/ledger/test_statement_checks.py)."""

import uuid
from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection, transaction

from ledger import engine
from ledger.models import Account, Journal
from ledger.types import AccountKey, AccountType, PostingLine
from tests.ledger.conftest import make_account

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL posting functions")


def _line(key: AccountKey, amount: int) -> PostingLine:
    """A line as a direct caller of the function could send it (PostingLine refuses a zero amount)."""
    line = object.__new__(PostingLine)
    object.__setattr__(line, "account", key)
    object.__setattr__(line, "amount", amount)
    return line


def _item(*lines: PostingLine) -> engine.Item:
    return engine.Item(reference="raw:" + uuid.uuid4().hex, kind="transfer", lines=lines, occurred_at=datetime.now(UTC))


def _refused(call, *items) -> tuple[str, str, str]:
    """(SQLSTATE, constraint, message) of the refusal; nothing of the call is written."""
    before = Journal.objects.count()
    with pytest.raises(IntegrityError) as info, transaction.atomic():
        call(connection, list(items) if call is _batch else items[0])
    assert Journal.objects.count() == before
    cause = info.value.__cause__
    return cause.sqlstate, cause.diag.constraint_name, cause.diag.message_primary


def _lean(conn, item):
    """ledger_post_one() (the accounts' ids cached: the known path)."""
    results = engine._post_pg_one(conn, item)
    assert results is not None, "the lean path answered retry"
    return results


def _batch(conn, items):
    """ledger_post_batch_atomic() (several journals) or ledger_post_batch() (one)."""
    return (
        engine._post_pg(conn, items, atomic=True)
        if len(items) > 1
        else engine._post_pg(conn, [*items, _item(*items[0].lines)], atomic=True)
    )


@pytest.fixture
def keys(owner):
    keys = [make_account(owner, c, cur) for c, cur in (("a", "EUR"), ("b", "EUR"), ("c", "USD"), ("d", "USD"))]
    for key in keys:  # the lean path's cache: known ids
        account = Account.objects.get(owner=key.owner, code=key.code, currency=key.currency, parent=None)
        engine._ACCOUNT_IDS[key] = (account.id, False)
    return keys


@pytest.mark.django_db
@pytest.mark.parametrize("call", [_lean, _batch], ids=["post_one", "post_batch"])
def test_a_zero_amount_is_refused_by_the_function(keys, call):
    a, b, *_ = keys
    state, constraint, message = _refused(call, _item(_line(a, 0), _line(b, 0)))
    assert (state, constraint) == ("23514", "ledger_entry_amount_nonzero") and "zero amount" in message
    state, constraint, _ = _refused(call, _item(_line(a, 5), _line(b, -5), _line(b, 0)))
    assert (state, constraint) == ("23514", "ledger_entry_amount_nonzero")


@pytest.mark.django_db
@pytest.mark.parametrize("call", [_lean, _batch], ids=["post_one", "post_batch"])
def test_unbalanced_lines_are_refused_by_the_function(keys, call):
    a, b, c, d = keys
    state, constraint, message = _refused(call, _item(_line(a, 5), _line(b, -4)))
    assert (state, constraint) == ("23514", "ledger_journal_balanced") and "does not balance in EUR" in message
    # balanced in the first line's currency, not in another
    state, constraint, message = _refused(call, _item(_line(a, 5), _line(b, -5), _line(c, 3), _line(d, -2)))
    assert (state, constraint) == ("23514", "ledger_journal_balanced") and "does not balance in USD" in message
    # two currencies, each balanced: posted
    (result, *_) = call(
        connection,
        [_item(_line(a, 5), _line(c, 3), _line(b, -5), _line(d, -3))]
        if call is _batch
        else _item(_line(a, 5), _line(c, 3), _line(b, -5), _line(d, -3)),
    )
    assert result.created


@pytest.mark.django_db
def test_an_unbalanced_journal_later_in_a_batch_is_refused_whole(keys):
    a, b, *_ = keys
    state, constraint, _ = _refused(
        _batch, _item(_line(a, 5), _line(b, -5)), _item(_line(a, 5), _line(b, -5)), _item(_line(a, 7), _line(b, -5))
    )
    assert (state, constraint) == ("23514", "ledger_journal_balanced")


@pytest.mark.django_db
def test_a_hot_account_row_in_another_currency_is_refused(owner):
    """The runtime role may INSERT accounts (empty projections): a shard of a hot account in another
    currency than its parent's is refused at its INSERT; planted past the triggers (a superuser in
    replica mode), the posting functions still take no entries in the parent's currency on it."""
    key = AccountKey(owner, "fee_revenue", "EUR")  # a hot chart code
    other = make_account(owner, "x", "EUR")
    shard_sql = (
        "INSERT INTO ledger_account (owner, code, currency, type, hot, status, shards, parent_id, shard,"
        " created_at) VALUES (%s, 'fee_revenue', 'USD', 'revenue', true, 'active', 0, %s, 0, now())"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_account (owner, code, currency, type, hot, status, shards, created_at)"
            " VALUES (%s, 'fee_revenue', 'EUR', 'revenue', true, 'active', 1, now()) RETURNING id",
            [owner],
        )
        (parent,) = cursor.fetchone()
    with pytest.raises(IntegrityError) as info, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(shard_sql, [owner, parent])
    assert info.value.__cause__.diag.constraint_name == "ledger_account_shard_of_parent"
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(shard_sql, [owner, parent])
        finally:
            cursor.execute("SET session_replication_role = origin")
    state, constraint, message = _refused(_batch, _item(_line(key, 5), _line(other, -5)))
    assert (state, constraint) == ("23503", "ledger_entry_account_currency"), message
    # the lean path takes no shard of another currency: it answers retry (the caller then takes the
    # batch function, which refuses as above), nothing written
    engine._ACCOUNT_IDS[key] = (parent, True)
    engine._ACCOUNT_IDS[other] = (Account.objects.get(owner=owner, code="x").id, False)
    before = Journal.objects.count()
    assert engine._post_pg_one(connection, _item(_line(key, 5), _line(other, -5))) is None
    assert Journal.objects.count() == before


@pytest.mark.django_db
def test_the_entry_trigger_runs_for_raw_inserts_but_not_for_the_posting_functions(keys):
    a, b, *_ = keys

    def trigger_calls():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions"
                " WHERE funcname = 'ledger_check_entries'"
            )
            return cursor.fetchone()[0]

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL track_functions = 'pl'")
    assert _lean(connection, _item(_line(a, 5), _line(b, -5)))[0].created
    assert _batch(connection, [_item(_line(a, 5), _line(b, -5))])[0].created
    assert trigger_calls() == 0
    with connection.cursor() as cursor:  # the superuser's raw INSERT: checked
        cursor.execute(
            "INSERT INTO ledger_journal (reference, kind, phase, memo, metadata, occurred_at, created_at)"
            " VALUES (%s, 'transfer', 0, '', '{}', now(), now()) RETURNING id",
            ["raw:" + uuid.uuid4().hex],
        )
        (journal,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO ledger_entry (journal_id, account_id, currency, amount, balance_after, version,"
            " is_pending) SELECT %s, id, currency, CASE code WHEN 'a' THEN 5 ELSE -5 END, 0, 99, false"
            " FROM ledger_account WHERE owner = %s AND code IN ('a', 'b')",
            [journal, a.owner],
        )
    assert trigger_calls() == 1


_POST_ONE = (
    "SELECT r_status, r_journal FROM ledger_post_one(%s::text[], %s::text[], %s::text[], %s::bigint[],"
    " %s::boolean[], %s::integer[], %s::bigint[], %s, 'transfer', '', '{}'::jsonb, now(), %s::smallint,"
    " NULL, NULL)"
)


def _account(key: AccountKey) -> Account:
    return Account.objects.get(owner=key.owner, code=key.code, currency=key.currency, parent=None)


@pytest.mark.django_db
def test_a_null_hot_flag_is_checked_as_not_hot(owner):
    """A direct caller sending NULL hot flags: the rows are still checked against their keys (bogus
    keys answer retry, nothing written) and a pending posting still reserves on the limited account,
    so a second hold beyond the limit is refused (the review of session 11: NULL skipped both)."""
    limited = make_account(owner, "wallet", "EUR", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    other = make_account(owner, "other", "EUR")
    funding = [_account(other).id, _account(limited).id]
    with connection.cursor() as c:  # fund the limited account with 100 (credit)
        c.execute(_POST_ONE, [[owner, owner], ["other", "wallet"], ["EUR", "EUR"], funding, [False, False], [1, 2],
                              [100, -100], "raw:" + uuid.uuid4().hex, 0])  # fmt: skip
        assert c.fetchone()[0] == "created"
        ids = [_account(limited).id, _account(other).id]
        # bogus keys for real ids, hot flags NULL: a retry, not a posting
        c.execute(_POST_ONE, [["x", "y"], ["x", "y"], ["USD", "USD"], ids, [None, None], [1, 2], [100, -100],
                              "raw:" + uuid.uuid4().hex, 1])  # fmt: skip
        assert c.fetchone() == ("retry", None)
        # the right keys, hot flags NULL: the hold reserves the whole 100, the next one is refused
        for expected in ("created", "exceeds_credits"):
            c.execute(_POST_ONE, [[owner, owner], ["wallet", "other"], ["EUR", "EUR"], ids, [None, None], [1, 2],
                                  [100, -100], "raw:" + uuid.uuid4().hex, 1])  # fmt: skip
            assert c.fetchone()[0] == expected
    assert _account(limited).debits_pending == 100


@pytest.mark.django_db
def test_a_shard_must_be_one_of_its_hot_parents(owner):
    """Any role that may create accounts (the runtime role may) cannot add a "shard" of another
    currency, key or number to a hot account: the posting functions would lock and write it for the
    parent's key (the review of session 11: entries in USD on a EUR hot account)."""
    key = make_account(owner, "fees", "EUR", type=AccountType.REVENUE, hot=True)
    parent = _account(key)
    assert parent.hot and parent.shards > 0
    for currency, shard, code in (("USD", parent.shards, "fees"), ("EUR", parent.shards, "fees"),
                                  ("EUR", -1, "fees"), ("EUR", 0, "other")):  # fmt: skip
        with pytest.raises(IntegrityError) as info, transaction.atomic():
            Account.objects.create(owner=owner, code=code, currency=currency, type=parent.type, hot=True,
                                   parent=parent, shard=shard)  # fmt: skip
        assert info.value.__cause__.diag.constraint_name == "ledger_account_shard_of_parent"
    # the shards account_get_or_create made are its own, and postings spread over them as before
    assert Account.objects.filter(parent=parent, currency="EUR").count() == parent.shards
