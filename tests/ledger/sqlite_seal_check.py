"""Run by test_sqlite_seal.py in a subprocess on a fresh SQLite file: the journal seal (SQLite's own
triggers refuse an unbalanced journal, docs/decisions/ledger-sqlite-journal-seal.md). Each case runs
on its own; the script prints one JSON object {case: "ok" or the failure} as its last line.

Raw SQL goes in transactions as a writer would (BEGIN ... COMMIT through transaction.atomic()): in
autocommit every INSERT commits alone, and entries without their journal are refused at that commit.
"""

import json
import os
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta

from tests.ledger.sqlite_script import outcome, setup

setup(migrate=False)  # (not migrated: existing_database_migrates builds an old schema first)

from django.core.management import call_command  # noqa: E402
from django.db import DatabaseError, connection, transaction  # noqa: E402

ENTRY_SQL = (
    "INSERT INTO ledger_entry (journal_id, account_id, currency, amount, balance_after, version, is_pending)"
    " VALUES (%s, %s, %s, %s, %s, %s, 0)"
)
JOURNAL_SQL = (
    "INSERT INTO ledger_journal (id, reference, kind, phase, memo, metadata, occurred_at, pending_id)"
    " VALUES (%s, %s, 'adjustment', %s, '', '{}', '2026-01-01', %s)"
)
ACCOUNT_SQL = (
    "INSERT INTO ledger_account (id, owner, code, currency, type, hot, debits_must_not_exceed_credits,"
    " credits_must_not_exceed_debits, shards, balance) VALUES (%s, %s, %s, %s, 'asset', 0, 0, 0, 0, %s)"
)
CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def snapshot():
    """Every ledger row as text: what a refused journal must leave as it was."""
    with connection.cursor() as c:
        c.execute("SELECT count(*), coalesce(sum(id), 0) FROM ledger_journal")
        journals = c.fetchone()
        c.execute("SELECT count(*), coalesce(sum(id), 0), coalesce(sum(amount * id), 0) FROM ledger_entry")
        entries = c.fetchone()
        c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'ledger_journal_unsealed'")
        unsealed = (0,)
        if c.fetchone()[0]:
            c.execute("SELECT count(*) FROM ledger_journal_unsealed")
            unsealed = c.fetchone()
    return journals, entries, unsealed


def refused(fn, message: str) -> str:
    """Run fn in its own transaction; it must be refused with `message` and leave nothing written."""
    before = snapshot()
    try:
        with transaction.atomic():
            fn()
    except DatabaseError as exc:
        assert message in str(exc), f"refused, but not for {message!r}: {exc}"
    else:
        raise AssertionError(f"not refused (expected {message!r})")
    after = snapshot()
    assert after == before, f"a refused journal wrote something: {before} -> {after}"
    assert after[2] == (0,), after
    return str(message)


_accounts = {}
OWNER = ["mer_seal"]  # each case has its own accounts: one case's outcome cannot touch another's


def account(code: str, currency: str = "EUR"):
    """A plain account (no limit) of the running case."""
    from ledger.models import Account
    from ledger.services import account_get_or_create
    from ledger.types import AccountKey, AccountType

    key = AccountKey(OWNER[0], code, currency)
    if key not in _accounts:
        account_get_or_create(key=key, type=AccountType.ASSET)
        _accounts[key] = Account.objects.get(owner=key.owner, code=key.code, currency=key.currency, parent=None)
    return _accounts[key]


def next_journal_id() -> int:
    with connection.cursor() as c:
        c.execute("SELECT coalesce(max(id), 0) + 1000 FROM ledger_journal")
        return c.fetchone()[0]


def entries(journal_id: int, *legs) -> None:
    """Raw entries of `journal_id`: legs (account code, currency, amount), each the next version of
    its account with the running balance, and the projection moved with it (in the same transaction:
    a refused journal leaves both as they were)."""
    with connection.cursor() as c:
        for code, currency, amount in legs:
            acc = account(code, currency)
            c.execute("SELECT balance, version FROM ledger_account WHERE id = %s", [acc.id])
            balance, version = c.fetchone()
            c.execute(ENTRY_SQL, [journal_id, acc.id, currency, amount, balance + amount, version + 1])
            c.execute(
                "UPDATE ledger_account SET balance = balance + %s, version = version + 1 WHERE id = %s",
                [amount, acc.id],
            )


def journal(journal_id: int, reference: str | None = None, phase: int = 0, pending_id: int | None = None) -> None:
    with connection.cursor() as c:
        c.execute(JOURNAL_SQL, [journal_id, reference or f"raw:{uuid.uuid4().hex}", phase, pending_id])


@case
def raw_balanced_journal_accepted():
    jid = next_journal_id()
    with transaction.atomic():
        entries(jid, ("a", "EUR", 500), ("b", "EUR", -500))
        journal(jid)
    assert snapshot()[2] == (0,)
    from ledger.verify import ledger_verify

    report = ledger_verify()
    assert report.ok, report.problems


@case
def raw_unbalanced_journal_refused():
    def write():
        jid = next_journal_id()
        entries(jid, ("a", "EUR", 500), ("b", "EUR", -499))
        journal(jid)

    refused(write, "journal does not balance")


@case
def raw_unbalanced_journal_in_the_old_order_refused():
    """The journal row first (as before the seal), then its entries: the row seals nothing."""

    def write():
        jid = next_journal_id()
        journal(jid)
        entries(jid, ("a", "EUR", 500), ("b", "EUR", -499))

    refused(write, "a journal needs entries")


@case
def entries_without_their_journal_refused_at_commit():
    def write():
        entries(next_journal_id(), ("a", "EUR", 500), ("b", "EUR", -499))

    refused(write, "FOREIGN KEY constraint failed")


@case
def balanced_entries_without_their_journal_refused_at_commit():
    def write():
        entries(next_journal_id(), ("a", "EUR", 500), ("b", "EUR", -500))

    refused(write, "FOREIGN KEY constraint failed")


@case
def entries_without_their_journal_refused_in_autocommit():
    before = snapshot()
    assert connection.get_autocommit()
    try:
        with connection.cursor() as c:
            c.execute(ENTRY_SQL, [next_journal_id(), account("a").id, "EUR", 1, 1, 1])
    except DatabaseError as exc:
        assert "FOREIGN KEY constraint failed" in str(exc), exc
    else:
        raise AssertionError("an entry without its journal committed")
    assert snapshot() == before


@case
def marker_of_a_written_journal_refused():
    """A marker row outlives its transaction only if its journal exists (the deferred foreign key),
    and then Django's flush could not delete that journal: refused."""
    posted = _posted_journal()

    def write():
        with connection.cursor() as c:
            c.execute("INSERT INTO ledger_journal_unsealed (journal_id) VALUES (%s)", [posted.journal_id])

    refused(write, "a written journal has no marker")


@case
def unsealed_marker_cannot_be_deleted():
    def write():
        entries(next_journal_id(), ("a", "EUR", 500), ("b", "EUR", -500))
        with connection.cursor() as c:
            c.execute("DELETE FROM ledger_journal_unsealed")

    refused(write, "stay unsealed")


@case
def entry_added_to_a_written_journal_refused():
    posted = _posted_journal()
    # a balanced pair, even: a written journal takes no more entries
    refused(lambda: entries(posted.journal_id, ("a", "EUR", 7), ("b", "EUR", -7)), "journal is sealed")
    refused(lambda: entries(posted.journal_id, ("a", "EUR", 7)), "journal is sealed")


def _posted_journal():
    from ledger import services
    from ledger.types import AccountKey, transfer_lines

    a, b = AccountKey(OWNER[0], "a", "EUR"), AccountKey(OWNER[0], "b", "EUR")
    account("a"), account("b")
    return services.journal_post(
        reference=f"seal:{uuid.uuid4().hex}",
        lines=transfer_lines(debit=a, credit=b, amount=10),
        occurred_at=datetime.now(UTC),
    )


@case
def journal_replace_refused():
    """INSERT OR REPLACE deletes the row it collides with without its DELETE trigger: a written
    journal must not be swapped for another row (same id, or same reference)."""
    posted = _posted_journal()
    with connection.cursor() as c:
        c.execute("SELECT reference FROM ledger_journal WHERE id = %s", [posted.journal_id])
        (reference,) = c.fetchone()
    replace = JOURNAL_SQL.replace("INSERT INTO", "INSERT OR REPLACE INTO")

    def same_id():
        with connection.cursor() as c:
            c.execute(replace, [posted.journal_id, "raw:other", 0, None])

    def same_reference():
        jid = next_journal_id()
        entries(jid, ("a", "EUR", 3), ("b", "EUR", -3))
        with connection.cursor() as c:
            c.execute(replace, [jid, reference, 0, None])

    refused(same_id, "a journal is never replaced")
    refused(same_reference, "a journal is never replaced")


@case
def entry_replace_refused():
    """An entry colliding on (account, version) would delete a written journal's entry (its
    journal unbalanced, behind the seal's back): refused, whatever the conflict clause."""
    posted = _posted_journal()
    with connection.cursor() as c:
        c.execute(
            "SELECT account_id, version FROM ledger_entry WHERE journal_id = %s AND amount > 0", [posted.journal_id]
        )
        account_id, version = c.fetchone()

    def write():
        jid = next_journal_id()
        with connection.cursor() as c:
            c.execute(
                ENTRY_SQL.replace("INSERT INTO", "INSERT OR REPLACE INTO"),
                [jid, account_id, "EUR", 10, 10, version],
            )
        entries(jid, ("b", "EUR", -10))
        journal(jid)

    refused(write, "an entry is never replaced")
    with connection.cursor() as c:
        c.execute("SELECT count(*) FROM ledger_entry WHERE journal_id = %s", [posted.journal_id])
        assert c.fetchone() == (2,)


@case
def account_replace_refused():
    """An account replaced (INSERT OR REPLACE colliding on its id or its key) would come back with
    another currency and an empty projection, its entries behind it: refused; and a new account
    cannot start with a balance (only entries move one)."""
    posted = _posted_journal()
    with connection.cursor() as c:
        c.execute(
            "SELECT a.id, a.owner, a.code, a.currency, a.balance FROM ledger_account a JOIN ledger_entry e"
            " ON e.account_id = a.id WHERE e.journal_id = %s AND e.amount > 0",
            [posted.journal_id],
        )
        account_id, owner, code, currency, balance = c.fetchone()

    def same_id():
        with connection.cursor() as c:
            c.execute(ACCOUNT_SQL.replace("INSERT INTO", "INSERT OR REPLACE INTO"), [account_id, owner, code, "USD", 0])

    def same_key():
        with connection.cursor() as c:
            c.execute(ACCOUNT_SQL.replace("INSERT INTO", "INSERT OR REPLACE INTO"), [None, owner, code, currency, 0])

    def with_a_balance():
        with connection.cursor() as c:
            c.execute(ACCOUNT_SQL, [None, owner, "made_up", "EUR", 1_000_000])

    refused(same_id, "an account is never replaced")
    refused(same_key, "an account is never replaced")
    refused(with_a_balance, "a new account starts with balance, pending amounts and version 0")
    with connection.cursor() as c:
        c.execute("SELECT currency, balance FROM ledger_account WHERE id = %s", [account_id])
        assert c.fetchone() == (currency, balance)


@case
def non_integer_amounts_refused():
    """The seal's sum() must be exact: amounts that are reals or texts are refused (2^53 + 1, -2^53,
    0.5, -0.5 sum to 0 in floating point, 1 in integers; the review of session 11 committed both)."""
    a, b = account("a"), account("b")

    def write(*amounts):
        def run():
            jid = next_journal_id()
            with connection.cursor() as c:
                for version, (acc, amount) in enumerate(zip([a, b, a, b], amounts, strict=False), start=1000):
                    c.execute(ENTRY_SQL, [jid, acc.id, "EUR", amount, 0, version])
            journal(jid)

        return run

    refused(write(2**53 + 1, -(2**53), 0.5, -0.5), "an entry's amount is an integer")
    refused(write(100, -100, "x"), "an entry's amount is an integer")


@case
def journal_without_entries_refused():
    refused(lambda: journal(next_journal_id()), "a journal needs entries")
    refused(lambda: journal(next_journal_id(), phase=1), "a journal needs entries")
    # a void (phase 3) has no entries, but only as the void of a pending journal
    refused(lambda: journal(next_journal_id(), phase=3), "must be the void of a pending journal")


@case
def void_with_entries_refused():
    from ledger import services
    from ledger.types import AccountKey, transfer_lines

    a, b = AccountKey(OWNER[0], "a", "EUR"), AccountKey(OWNER[0], "b", "EUR")
    account("a"), account("b")
    pending = services.pending_create(
        reference=f"seal:{uuid.uuid4().hex}",
        lines=transfer_lines(debit=a, credit=b, amount=10),
        occurred_at=datetime.now(UTC),
    )

    def write():
        jid = next_journal_id()
        entries(jid, ("a", "EUR", 5), ("b", "EUR", -5))
        journal(jid, phase=3, pending_id=pending.journal_id)

    refused(write, "a void posts no entries")


@case
def multi_currency_journal_balanced_per_currency_accepted():
    jid = next_journal_id()
    with transaction.atomic():
        entries(jid, ("a", "EUR", 500), ("b", "EUR", -500), ("u1", "USD", 70), ("u2", "USD", -70))
        journal(jid)
    with connection.cursor() as c:
        c.execute("SELECT count(*) FROM ledger_entry WHERE journal_id = %s", [jid])
        assert c.fetchone() == (4,)


@case
def multi_currency_journal_unbalanced_in_one_currency_refused():
    def write():
        jid = next_journal_id()
        entries(jid, ("a", "EUR", 500), ("b", "EUR", -500), ("u1", "USD", 70), ("u2", "USD", -69))
        journal(jid)

    refused(write, "journal does not balance")


@case
def currencies_do_not_offset_each_other():
    """+500 EUR, -500 USD: zero in total, unbalanced in each currency."""

    def write():
        jid = next_journal_id()
        entries(jid, ("a", "EUR", 500), ("u2", "USD", -500))
        journal(jid)

    refused(write, "journal does not balance")


@case
def connection_without_foreign_keys_refused():
    """A connection outside Django (the sqlite3 shell's default: foreign_keys off) could not have the
    deferred check at COMMIT: its entry INSERT is refused outright."""
    acc = account("a")
    raw = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    try:
        assert raw.execute("PRAGMA foreign_keys").fetchone() == (0,)
        raw.execute("BEGIN IMMEDIATE")
        try:
            raw.execute(ENTRY_SQL.replace("%s", "?"), [next_journal_id(), acc.id, "EUR", 1, 1, 1])
        except sqlite3.IntegrityError as exc:
            assert "PRAGMA foreign_keys=ON" in str(exc), exc
        else:
            raise AssertionError("an entry INSERT without foreign keys was let through")
        try:  # nor a marker written first, for entries to find
            raw.execute("INSERT INTO ledger_journal_unsealed (journal_id) VALUES (?)", [next_journal_id()])
        except sqlite3.IntegrityError as exc:
            assert "PRAGMA foreign_keys=ON" in str(exc), exc
        else:
            raise AssertionError("a marker INSERT without foreign keys was let through")
        finally:
            raw.execute("ROLLBACK")
    finally:
        raw.close()


@case
def the_posting_api_works():
    """Every service on the sealed engine: postings, batches (atomic and not), reversals,
    pending post and void, expiry; the ledger verifies clean and nothing is left unsealed. On an
    emptied ledger (flush), so that the other cases' raw rows do not count."""
    call_command("flush", interactive=False, verbosity=0)
    _accounts.clear()
    from ledger import selectors, services
    from ledger.errors import LimitExceededError, PendingStateError
    from ledger.models import Journal
    from ledger.types import (
        AccountKey,
        Accounts,
        AccountType,
        JournalRequest,
        PostingLine,
        PostStatus,
        transfer_lines,
    )
    from ledger.verify import ledger_verify

    now = datetime.now(UTC)
    m, tag = "mer_api", uuid.uuid4().hex[:8]
    capture = (
        PostingLine.debit(Accounts.psp_receivable("alpha", "EUR"), 1000),
        PostingLine.credit(Accounts.merchant_pending(m, "EUR"), 970),
        PostingLine.credit(Accounts.fee_revenue("EUR"), 30),  # a hot account (shards)
    )
    first = services.journal_post(reference=f"{tag}:capture", lines=capture, occurred_at=now, kind="capture")
    assert first.status is PostStatus.CREATED
    again = services.journal_post(reference=f"{tag}:capture", lines=capture, occurred_at=now)
    assert (again.status, again.journal_id) == (PostStatus.EXISTS, first.journal_id)
    wallet = AccountKey(m, "wallet", "EUR")
    services.account_get_or_create(key=wallet, type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    src = Accounts.merchant_pending(m, "EUR")
    services.journal_post(
        reference=f"{tag}:fund", lines=transfer_lines(debit=src, credit=wallet, amount=100), occurred_at=now
    )

    # a batch: ids in order, each journal sealed with its own entries
    batch = [
        JournalRequest(
            reference=f"{tag}:b{i}", lines=transfer_lines(debit=wallet, credit=src, amount=10), occurred_at=now
        )
        for i in range(5)
    ]
    results = services.journal_post_many(batch)
    ids = [r.journal_id for r in results]
    assert [r.status for r in results] == [PostStatus.CREATED] * 5 and ids == sorted(ids), results
    assert len(set(ids)) == 5
    # an atomic batch refused as a whole writes nothing
    before = snapshot()
    over = [
        JournalRequest(
            reference=f"{tag}:o{i}", lines=transfer_lines(debit=wallet, credit=src, amount=30), occurred_at=now
        )
        for i in range(2)
    ]
    try:
        services.journal_post_many(over)
        raise AssertionError("atomic batch must fail")
    except LimitExceededError:
        pass
    assert snapshot() == before
    statuses = [r.status.value for r in services.journal_post_many(over, atomic=False)]
    assert statuses == ["created", "exceeds_credits"], statuses
    # a batch with a repeat of a reference inside it and a multi-currency journal
    usd = Accounts.merchant_pending(m, "USD")
    multi = (
        *transfer_lines(debit=Accounts.bank_cash("EUR"), credit=src, amount=5),
        *transfer_lines(debit=Accounts.bank_cash("USD"), credit=usd, amount=7),
    )
    got = services.journal_post_many(
        [
            JournalRequest(reference=f"{tag}:multi", lines=multi, occurred_at=now),
            JournalRequest(reference=f"{tag}:multi", lines=multi, occurred_at=now),
        ],
        atomic=False,
    )
    assert [r.status for r in got] == [PostStatus.CREATED, PostStatus.EXISTS] and got[0].journal_id == got[1].journal_id

    rev = services.journal_reverse(journal_id=first.journal_id, reference=f"{tag}:capture:rev", occurred_at=now)
    assert rev.status is PostStatus.CREATED
    # pending: create, post partly, void refused after; create, void; expiry
    p = services.pending_create(
        reference=f"{tag}:p1",
        lines=transfer_lines(debit=wallet, credit=src, amount=10),
        occurred_at=now,
        expires_at=now + timedelta(hours=1),
    )
    services.pending_post(
        pending_id=p.journal_id,
        reference=f"{tag}:p1:post",
        occurred_at=now,
        lines=transfer_lines(debit=wallet, credit=src, amount=6),
    )
    try:
        services.pending_void(pending_id=p.journal_id, reference=f"{tag}:p1:void", occurred_at=now)
        raise AssertionError("already resolved")
    except PendingStateError:
        pass
    p2 = services.pending_create(
        reference=f"{tag}:p2", lines=transfer_lines(debit=wallet, credit=src, amount=4), occurred_at=now
    )
    void = services.pending_void(pending_id=p2.journal_id, reference=f"{tag}:p2:void", occurred_at=now)
    assert Journal.objects.get(id=void.journal_id).entries.count() == 0
    services.pending_create(
        reference=f"{tag}:p3",
        lines=transfer_lines(debit=wallet, credit=src, amount=4),
        occurred_at=now,
        expires_at=now - timedelta(seconds=1),
    )
    assert services.pending_expire_due() == 1
    # two resolutions of one pending journal in one batch: the second is refused (in the batch's memory)
    p4 = services.pending_create(
        reference=f"{tag}:p4", lines=transfer_lines(debit=wallet, credit=src, amount=4), occurred_at=now
    )
    from ledger import engine
    from ledger.types import JournalPhase

    keys = (src, wallet)
    twice = [
        engine.Item(
            reference=f"{tag}:p4:void{i}",
            kind="void_pending",
            lines=(),
            occurred_at=now,
            phase=JournalPhase.VOID_PENDING,
            pending_id=p4.journal_id,
            extra_accounts=keys,
        )
        for i in range(2)
    ]
    got = engine.post(twice, atomic=False)
    assert [r.status for r in got] == [PostStatus.CREATED, PostStatus.PENDING_ALREADY_RESOLVED], got
    assert selectors.account_balance(key=wallet).posted == -(100 - 50 - 30 - 6)
    assert snapshot()[2] == (0,)
    report = ledger_verify()
    assert report.ok, report.problems


@case
def the_state_machine_holds():
    """The Hypothesis state machine of tests/ledger/test_balance_properties.py (random postings,
    batches, reversals, pending post/void, expiry against a model; ledger_verify after each run)
    on the sealed engine, in a transaction rolled back at the end, on an emptied ledger."""
    from hypothesis import HealthCheck, settings
    from hypothesis.stateful import run_state_machine_as_test

    from tests.ledger.test_balance_properties import LedgerMachine

    call_command("flush", interactive=False, verbosity=0)
    _accounts.clear()
    # pending_expire_due() is durable (its own transaction): allowed inside this one, marked as
    # Django's TestCase marks the test's
    outer = transaction.atomic()
    outer._from_testcase = True
    with outer:
        run_state_machine_as_test(
            LedgerMachine,
            settings=settings(
                max_examples=int(os.environ.get("LEDGER_HYPOTHESIS_EXAMPLES", 5)),
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
        transaction.set_rollback(True)


@case
def flush_still_empties_the_ledger():
    """Django's flush (the test runner's teardown) may empty the ledger; raw DELETE may not."""
    from ledger.models import Entry, Journal

    CASES["the_posting_api_works"]()
    assert Entry.objects.exists()
    for sql in ("DELETE FROM ledger_entry", "DELETE FROM ledger_journal"):
        try:
            with transaction.atomic(), connection.cursor() as c:
                c.execute(sql)
            raise AssertionError(f"let through: {sql}")
        except DatabaseError:
            pass
    call_command("flush", interactive=False, verbosity=0)
    _accounts.clear()
    assert not Entry.objects.exists() and not Journal.objects.exists()
    assert snapshot()[2] == (0,)
    # and the empty ledger posts again
    CASES["the_posting_api_works"]()


@case
def verify_reports_sums_past_bigint():
    """ledger_verify lists entries whose sums pass the bigint range and fails, never crashes
    (tests/ledger/verify_overflow_check.py); the ledger is emptied after (it fails verify for good)."""
    from tests.ledger.verify_overflow_check import check_verify_reports_sums_past_bigint

    try:
        check_verify_reports_sums_past_bigint()
    finally:
        call_command("flush", interactive=False, verbosity=0)
        _accounts.clear()


def existing_database_migrates():
    """A ledger written before 0011 (journal rows first, as 0002-0010 required) is migrated without
    rewriting a row; its journals are sealed from then on. Also a journal without entries and an
    unbalanced one, which SQLite let through before: they stay as they are (ledger_verify reports
    them) and take no more entries either. The database before 0011 is this one with 0011 reversed
    (0002 and 0008 load the current ledger/sql/sqlite.sql, so a fresh database has the seal from 0002
    on): 0010's trigger set, where an entry must name a journal that exists."""
    call_command("migrate", verbosity=0)
    call_command("migrate", "ledger", "0010", verbosity=0)
    with connection.cursor() as c:
        c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'ledger_journal_unsealed'")
        assert c.fetchone() == (0,)
    refused(lambda: entries(next_journal_id(), ("a", "EUR", 1)), "an entry must name a journal")
    a, b = account("a"), account("b")
    with transaction.atomic(), connection.cursor() as c:
        for jid, legs in ((1, ((a.id, 5), (b.id, -5))), (2, ()), (3, ((a.id, 3), (b.id, -2)))):
            c.execute(JOURNAL_SQL, [jid, f"old:{jid}", 0, None])
            for n, (account_id, amount) in enumerate(legs):
                c.execute(ENTRY_SQL, [jid, account_id, "EUR", amount, 0, 10 * jid + n + 1])

    def rows():
        with connection.cursor() as c:
            c.execute("SELECT * FROM ledger_journal ORDER BY id")
            journals = c.fetchall()
            c.execute("SELECT * FROM ledger_entry ORDER BY id")
            return journals, c.fetchall()

    before = rows()
    call_command("migrate", verbosity=0)
    assert rows() == before, "the migration rewrote ledger rows"
    from ledger.verify import ledger_verify

    problems = ledger_verify().problems
    assert problems["unbalanced_journals"] == [3] and problems["journals_without_entries"] == [2], problems
    for jid in (1, 2, 3):
        refused(lambda jid=jid: entries(jid, ("a", "EUR", 1), ("b", "EUR", -1)), "journal is sealed")


def main() -> None:
    results = {}
    for name, fn in (("existing_database_migrates", existing_database_migrates), *CASES.items()):
        OWNER[0] = "mer_" + name[:60]
        results[name] = outcome(fn)
        if name == "existing_database_migrates":
            call_command("migrate", verbosity=0)
            call_command("flush", interactive=False, verbosity=0)  # the old, unbalanced journals gone
            _accounts.clear()
    print(json.dumps(results))


main()
