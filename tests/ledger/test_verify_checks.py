"""ledger_verify finds what a raw writer can leave behind, one test per check; ledger_rebuild repairs
what it may and freezes the accounts whose entries breach their limit (audit of issue #4)."""

import json
import uuid

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from ledger import services
from ledger.errors import AccountFrozenError, JournalAlreadyReversedError
from ledger.models import Account, AccountStatus, Entry
from ledger.types import AccountKey, Accounts, AccountType, JournalPhase, PostingLine, transfer_lines
from ledger.verify import CHECKS, ledger_verify
from tests.ledger.conftest import make_account


def _account(key) -> Account:
    return Account.objects.get(owner=key.owner, code=key.code, currency=key.currency, parent=None)


def _key(account: Account) -> AccountKey:
    return AccountKey(account.owner, account.code, account.currency)


def _raw_journal(lines=(), *, phase=JournalPhase.POSTED, reverses_id=None, pending_id=None, check=True) -> int:
    """A journal written by raw SQL, past the posting functions. lines: (account id, amount, version, pending);
    balance_after is the true running balance unless the line carries a fifth value."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_journal (reference, kind, phase, memo, metadata, occurred_at, reverses_id, pending_id)"
            " VALUES (%s, 'adjustment', %s, '', '{}', now(), %s, %s) RETURNING id",
            ["raw:" + uuid.uuid4().hex, int(phase), reverses_id, pending_id],
        )
        (journal_id,) = cursor.fetchone()
        for account_id, amount, version, pending, *after in lines:
            cursor.execute(
                "SELECT coalesce((SELECT balance_after FROM ledger_entry WHERE account_id = %s"
                " ORDER BY version DESC LIMIT 1), 0)",
                [account_id],
            )
            (previous,) = cursor.fetchone()
            balance_after = after[0] if after else previous + (0 if pending else amount)
            cursor.execute(
                "INSERT INTO ledger_entry (journal_id, account_id, currency, amount, balance_after, version,"
                " is_pending) VALUES (%s, %s, 'EUR', %s, %s, %s, %s)",
                [journal_id, account_id, amount, balance_after, version, pending],
            )
        if check:  # the database's own checks (balance per journal, at COMMIT) pass
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    return journal_id


def _fund(owner, now, key, amount):
    services.journal_post(
        reference=f"fund:{uuid.uuid4().hex}",
        lines=transfer_lines(debit=Accounts.bank_cash("EUR"), credit=key, amount=amount),
        occurred_at=now,
    )


@pytest.fixture
def wallet(owner, now):
    """A limited wallet (debits must not exceed credits) holding 500, and a plain asset account."""
    key = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    _fund(owner, now, key, 500)
    other = make_account(owner, "other")
    return _account(key), _account(other)


def _only(report, check):
    """The checks that found something, and what `check` found."""
    return {name for name, ids in report.problems.items() if ids}, report.problems[check]


@pytest.mark.django_db
def test_a_clean_ledger_passes_every_check(owner, now, wallet):
    report = ledger_verify()
    assert report.ok, report.problems
    assert set(report.problems) == set(CHECKS)
    assert {"limit_breaches", "journals_without_entries", "resolution_mismatch", "reversal_mismatch"} <= set(CHECKS)


@pytest.mark.django_db
def test_verify_finds_a_limit_breached_by_raw_entries(owner, now, wallet, capsys):
    # the audit's gap 2: a balanced journal, right versions and balances, overdraws the wallet
    account, other = wallet
    _raw_journal([(account.id, 900, 2, False), (other.id, -900, 1, False)])
    report = ledger_verify()
    assert report.problems["limit_breaches"] == [account.id]
    assert set(report.problems["projection_mismatch"]) == {account.id, other.id}
    assert not report.problems["entries_replay_mismatch"] and not report.problems["unbalanced_journals"]
    with pytest.raises(SystemExit) as exit_:
        call_command("ledger_verify")
    assert exit_.value.code == 1
    assert f"limit_breaches: {account.id}" in capsys.readouterr().out


@pytest.mark.django_db
def test_limit_breaches_count_open_pending_reservations(owner, now, wallet):
    account, other = wallet
    pending = services.pending_create(
        reference=f"hold:{owner}",
        lines=transfer_lines(debit=_key(account), credit=Accounts.bank_cash("EUR"), amount=400),
        occurred_at=now,
    )
    # posted -500 + 300 = -200 is within the limit alone; with the open reservation of 400 it is not
    _raw_journal([(account.id, 300, 3, False), (other.id, -300, 1, False)])
    assert ledger_verify().problems["limit_breaches"] == [account.id]
    services.pending_void(pending_id=pending.journal_id, reference=f"void:{owner}", occurred_at=now)
    assert ledger_verify().problems["limit_breaches"] == []  # the reservation is released


@pytest.mark.django_db
def test_limit_breaches_credits_must_not_exceed_debits(owner, now):
    key = make_account(owner, "asset", type=AccountType.ASSET, credits_must_not_exceed_debits=True)
    other = _account(make_account(owner, "other"))
    services.journal_post(
        reference=f"in:{owner}", lines=transfer_lines(debit=key, credit=_key(other), amount=100), occurred_at=now
    )
    account = _account(key)
    _raw_journal([(account.id, -150, 2, False), (other.id, 150, 2, False)])
    assert ledger_verify().problems["limit_breaches"] == [account.id]


@pytest.mark.django_db
def test_rebuild_repairs_every_account_that_fits_and_freezes_a_breach(owner, now, wallet, capsys):
    account, other = wallet
    _raw_journal([(account.id, 900, 2, False), (other.id, -900, 1, False)])
    tampered = _account(Accounts.bank_cash("EUR"))
    Account.objects.filter(id=tampered.id).update(balance=tampered.balance + 7)
    with pytest.raises(SystemExit) as exit_:
        call_command("ledger_rebuild")
    assert exit_.value.code == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["accounts_frozen"] == [account.id]
    assert str(account.id) in err and "FROZEN" in err and "docs/runbooks/ledger-verify-failing.md" in err
    report = ledger_verify()
    # everything else was rebuilt; the wallet keeps its last (valid) projection, and is frozen
    assert report.problems["projection_mismatch"] == [account.id]
    assert report.problems["limit_breaches"] == [account.id]
    account.refresh_from_db()
    assert (account.balance, account.version, account.status) == (-500, 1, AccountStatus.FROZEN)
    with pytest.raises(AccountFrozenError):
        services.journal_post(
            reference=f"spend:{owner}",
            lines=transfer_lines(debit=_key(account), credit=Accounts.bank_cash("EUR"), amount=1),
            occurred_at=now,
        )


@pytest.mark.django_db
def test_rebuild_without_breach_exits_zero(owner, now, wallet, capsys):
    account, _ = wallet
    Account.objects.filter(id=account.id).update(balance=-499)
    call_command("ledger_rebuild")  # no SystemExit
    assert json.loads(capsys.readouterr().out)["accounts_frozen"] == []
    assert ledger_verify().ok
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE


@pytest.mark.django_db
def test_verify_finds_an_unbalanced_journal(owner, now, wallet):
    account, _ = wallet
    # accepted by the INSERT; the database refuses it at COMMIT, which this savepoint never reaches
    with transaction.atomic():
        journal = _raw_journal([(account.id, -5, 2, False)], check=False)
        found, ids = _only(ledger_verify(), "unbalanced_journals")
        transaction.set_rollback(True)
    assert ids == [journal]


@pytest.mark.django_db
def test_verify_finds_a_version_gap(owner, now, wallet):
    account, other = wallet
    # right balances, but the wallet's versions jump from 1 to 3
    _raw_journal([(account.id, -5, 3, False), (other.id, 5, 1, False)])
    gap = Account.objects.get(id=account.id).entries.get(version=3)
    report = ledger_verify()
    assert report.problems["entries_replay_mismatch"] == [gap.id]


@pytest.mark.django_db
def test_verify_finds_pending_entries_in_a_posted_journal(owner, now, wallet):
    account, other = wallet
    journal = _raw_journal([(account.id, -5, 2, True), (other.id, 5, 1, True)])
    ids = sorted(Entry.objects.filter(journal_id=journal).values_list("id", flat=True))
    assert ids == ledger_verify().problems["entry_shape_mismatch"]


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="switches the entry triggers off: PostgreSQL")
def test_verify_finds_entries_whose_account_does_not_exist(owner, now, wallet):
    """Review 14c: no foreign key holds an entry's account_id (the triggers do: accounts are never
    deleted, their id never changes, an entry's account must exist). Entries written past those
    triggers (here with them switched off, as a superuser can) on account ids that name no account
    were seen by no check: the shape check compared their currency with a missing row (NULL)."""
    max_id = Account.objects.order_by("-id").values_list("id", flat=True).first()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
        journal = _raw_journal([(max_id + 1000, 5, 1, False), (max_id + 1001, -5, 1, False)], check=False)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = origin")
        ids = sorted(Entry.objects.filter(journal_id=journal).values_list("id", flat=True))
        found, listed = _only(ledger_verify(), "entry_shape_mismatch")
        transaction.set_rollback(True)
    assert (found, listed) == ({"entry_shape_mismatch"}, ids)


@pytest.mark.django_db
def test_verify_finds_a_journal_without_entries(owner, now, wallet):
    journal = _raw_journal([])
    found, ids = _only(ledger_verify(), "journals_without_entries")
    assert (found, ids) == ({"journals_without_entries"}, [journal])


@pytest.mark.django_db
def test_verify_finds_a_resolution_of_a_journal_never_pending(owner, now, wallet):
    account, other = wallet
    posted = services.journal_post(
        reference=f"p:{owner}", lines=transfer_lines(debit=_key(other), credit=_key(account), amount=5), occurred_at=now
    )
    void = _raw_journal([], phase=JournalPhase.VOID_PENDING, pending_id=posted.journal_id)
    found, ids = _only(ledger_verify(), "resolution_mismatch")
    assert (found, ids) == ({"resolution_mismatch"}, [void])


@pytest.mark.django_db
def test_verify_finds_a_void_with_entries(owner, now, wallet):
    account, other = wallet
    pending = services.pending_create(
        reference=f"hold:{owner}",
        lines=transfer_lines(debit=_key(other), credit=_key(account), amount=5),
        occurred_at=now,
    )
    lines = [(account.id, -5, 3, False), (other.id, 5, 2, False)]
    void = _raw_journal(lines, phase=JournalPhase.VOID_PENDING, pending_id=pending.journal_id)
    ids = ledger_verify().problems["entry_shape_mismatch"]
    assert sorted(Entry.objects.filter(journal_id=void).values_list("id", flat=True)) == ids


@pytest.mark.django_db
def test_verify_finds_fake_reversals(owner, now, wallet):
    account, other = wallet
    lines = transfer_lines(debit=_key(other), credit=_key(account), amount=50)
    first = services.journal_post(reference=f"a:{owner}", lines=lines, occurred_at=now).journal_id
    second = services.journal_post(reference=f"b:{owner}", lines=lines, occurred_at=now).journal_id
    # the audit's: a "reversal" without entries, which makes the real one answer already_reversed
    empty = _raw_journal([], reverses_id=first)
    with pytest.raises(JournalAlreadyReversedError):
        services.journal_reverse(journal_id=first, reference=f"rev:{owner}", occurred_at=now)
    # entries that are not the mirror image (half the amount)
    half = _raw_journal([(account.id, 25, 4, False), (other.id, -25, 4, False)], reverses_id=second)
    report = ledger_verify()
    assert report.problems["reversal_mismatch"] == [empty, half]
    assert report.problems["journals_without_entries"] == [empty]


@pytest.mark.django_db
def test_real_reversals_pass_including_hot_accounts_and_posted_pendings(owner, now, wallet):
    account, other = wallet
    capture = (
        PostingLine.debit(Accounts.psp_receivable("alpha", "EUR"), 1000),
        PostingLine.credit(Accounts.merchant_pending(owner, "EUR"), 970),
        PostingLine.credit(Accounts.fee_revenue("EUR"), 30),  # hot: its entries land on any shard
    )
    journals = [
        services.journal_post(reference=f"c{i}:{owner}", lines=capture, occurred_at=now).journal_id for i in range(3)
    ]
    pending = services.pending_create(
        reference=f"hold:{owner}",
        lines=transfer_lines(debit=_key(other), credit=_key(account), amount=5),
        occurred_at=now,
    )
    post = services.pending_post(pending_id=pending.journal_id, reference=f"post:{owner}", occurred_at=now)
    for journal in [*journals, post.journal_id]:
        services.journal_reverse(journal_id=journal, reference=f"rev:{journal}", occurred_at=now)
    assert ledger_verify().ok, ledger_verify().problems


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["weird", "", "ACTIVE"])
def test_account_status_is_active_or_frozen(owner, status):
    key = make_account(owner, "acct")
    with pytest.raises(IntegrityError, match="status"), transaction.atomic():
        Account.objects.filter(owner=key.owner).update(status=status)
    with pytest.raises(IntegrityError, match="status"), transaction.atomic():
        Account.objects.create(owner=owner, code="new", currency="EUR", type="asset", status=status)
    services.account_set_status(key=key, status=AccountStatus.FROZEN)
    services.account_set_status(key=key, status=AccountStatus.ACTIVE)
    assert _account(key).status == AccountStatus.ACTIVE


@pytest.mark.django_db
def test_the_runbooks_correction_of_a_breach(owner, now, wallet, capsys):
    """docs/runbooks/ledger-verify-failing.md, "A limit breached by the entries", step 3."""
    account, other = wallet
    bad = _raw_journal([(account.id, 900, 2, False), (other.id, -900, 1, False)])
    with pytest.raises(SystemExit):
        call_command("ledger_rebuild")
    Account.objects.filter(id=account.id).update(debits_must_not_exceed_credits=False)
    call_command("ledger_rebuild")  # exits 0: the account fits now; it stays frozen
    assert Account.objects.get(id=account.id).status == AccountStatus.FROZEN
    # (account_set_status is durable: the runbook updates the row, a limited account has no shards)
    with transaction.atomic():
        Account.objects.filter(id=account.id).update(status=AccountStatus.ACTIVE)
        services.journal_reverse(journal_id=bad, reference=f"correction:{bad}", occurred_at=now)
        Account.objects.filter(id=account.id).update(debits_must_not_exceed_credits=True)
    assert ledger_verify().ok, ledger_verify().problems
    account.refresh_from_db()
    assert (account.balance, account.status, account.debits_must_not_exceed_credits) == (-500, "active", True)


@pytest.mark.django_db
def test_verify_inside_a_transaction_leaves_its_settings_behind(owner, now, wallet):
    # ledger_rebuild runs it under its locks: the rebuild's UPDATE keeps the planner's index scans
    assert ledger_verify().ok
    with connection.cursor() as cursor:
        cursor.execute("SHOW enable_indexscan")
        assert cursor.fetchone()[0] == "on"
        cursor.execute("SHOW work_mem")
        assert cursor.fetchone()[0] != "256MB"
