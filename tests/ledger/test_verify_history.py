"""ledger_verify finds two kinds of corruption it let through: a post of a pending journal that
moves more than the journal reserved, and a limited account that was beyond its limit after some
journal of its history though its last balance is within it. Raw SQL stands for a writer past the
posting functions (the owner, a superuser, a bug); each test makes every other check pass."""

import uuid

import pytest
from django.core.management import call_command
from django.db import connection

from ledger import services
from ledger.models import Account
from ledger.types import AccountKey, Accounts, AccountType, JournalPhase, PostingLine, transfer_lines
from ledger.verify import CHECKS, ledger_verify
from tests.ledger.conftest import make_account
from tests.ledger.test_verify_checks import _account, _key, _raw_journal

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="raw SQL journals: PostgreSQL"),
]


def _sync_projections(*accounts: Account) -> None:
    """Set the projections to the replay of the entries, as ledger_rebuild would (owner's UPDATE)."""
    from ledger.services.maintenance import _AMONG_PG, _REBUILD

    with connection.cursor() as cursor:
        cursor.execute(_REBUILD + _AMONG_PG, [[a.id for a in accounts]])


def _found(report) -> dict[str, list[int]]:
    return {name: ids for name, ids in report.problems.items() if ids}


@pytest.fixture
def wallet(owner, now):
    """A limited wallet (debits must not exceed credits) holding 500, and a plain asset account."""
    key = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    services.journal_post(
        reference=f"fund:{uuid.uuid4().hex}",
        occurred_at=now,
        lines=transfer_lines(debit=Accounts.bank_cash("EUR"), credit=key, amount=500),
    )
    other = make_account(owner, "other")
    return _account(key), _account(other)


def test_verify_finds_a_post_that_moves_more_than_its_pending_journal_reserved(owner, now, wallet):
    """What was wrong: nothing compared a post's entries with its pending journal's. The engines
    refuse a post beyond the reservation (`exceeds_pending_amount`), but a post of 300 against a hold
    of 100, written past them with its projections made to match, passed every check: the replay,
    the projections and the limits all agree with entries that moved money nobody reserved."""
    account, other = wallet
    pending = services.pending_create(
        reference=f"hold:{owner}",
        occurred_at=now,
        lines=transfer_lines(debit=_key(account), credit=_key(other), amount=100),
    )
    post = _raw_journal(
        [(account.id, 300, 3, False), (other.id, -300, 2, False)],
        phase=JournalPhase.POST_PENDING,
        pending_id=pending.journal_id,
    )
    _sync_projections(account, other)

    assert _found(ledger_verify()) == {"post_exceeds_pending": [post]}


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(lambda a, o, h: [(a.id, -100, 3, False), (o.id, 100, 2, False)], id="the-other-way"),
        pytest.param(lambda a, o, h: [(a.id, 100, 3, False), (h.id, -100, 1, False)], id="elsewhere"),
    ],
)
def test_verify_finds_a_post_in_the_other_direction_or_elsewhere(owner, now, wallet, lines):
    account, other = wallet
    third = _account(make_account(owner, "third"))
    pending = services.pending_create(
        reference=f"hold:{owner}",
        occurred_at=now,
        lines=transfer_lines(debit=_key(account), credit=_key(other), amount=100),
    )
    post = _raw_journal(lines(account, other, third), phase=JournalPhase.POST_PENDING, pending_id=pending.journal_id)
    _sync_projections(account, other, third)

    assert _found(ledger_verify()) == {"post_exceeds_pending": [post]}


def test_real_posts_pass_full_partial_and_on_hot_accounts(owner, now, wallet):
    account, other = wallet
    receivable = Accounts.psp_receivable("alpha", "EUR")  # hot: the post may land on another shard
    hold = services.pending_create(
        reference=f"hold:{owner}",
        occurred_at=now,
        lines=transfer_lines(debit=_key(account), credit=receivable, amount=100),
    )
    services.pending_post(
        pending_id=hold.journal_id,
        reference=f"post:{owner}",
        occurred_at=now,
        lines=transfer_lines(debit=_key(account), credit=receivable, amount=40),
    )
    full = services.pending_create(
        reference=f"hold2:{owner}",
        occurred_at=now,
        lines=[PostingLine(_key(account), 30), PostingLine(_key(other), -30)],
    )
    services.pending_post(pending_id=full.journal_id, reference=f"post2:{owner}", occurred_at=now)
    assert ledger_verify().ok, _found(ledger_verify())


def test_verify_finds_a_limit_breached_in_the_history(owner, now, wallet, capsys):
    """What was wrong: limits were checked on the last balance only. A raw journal that took the
    wallet 400 beyond what it held (balance +400 on an account whose debits must not exceed its
    credits), followed by one that put it back, left right versions, running balances and
    projections and a last balance within the limit: every check passed, and the overdraft (money
    paid out that the account never had, for as long as it lasted) was seen by nothing."""
    account, other = wallet
    overdraft = _raw_journal([(account.id, 900, 2, False), (other.id, -900, 1, False)])
    _raw_journal([(account.id, -900, 3, False), (other.id, 900, 2, False)])  # refilled
    _sync_projections(account, other)
    breach = account.entries.get(journal_id=overdraft).id

    report = ledger_verify()
    assert _found(report) == {"limit_breached_history": [breach]}
    assert "limit_breached_history" in CHECKS
    with pytest.raises(SystemExit):
        call_command("ledger_verify")
    assert f"limit_breached_history: {breach}" in capsys.readouterr().out


def test_a_journal_that_passes_beyond_the_limit_and_back_within_itself_is_no_breach(owner, now, wallet):
    """Limits hold per journal (the engines check them after all of a journal's lines): a journal
    whose lines on the wallet go +600 then -600 never leaves it beyond its limit."""
    account, other = wallet
    key, other_key = _key(account), _key(other)
    services.journal_post(
        reference=f"there-and-back:{owner}",
        occurred_at=now,
        lines=[
            PostingLine(key, 600),
            PostingLine(other_key, -600),
            PostingLine(key, -600),
            PostingLine(other_key, 600),
        ],
    )
    credits = make_account(owner, "asset", type=AccountType.ASSET, credits_must_not_exceed_debits=True)
    services.journal_post(
        reference=f"in:{owner}",
        occurred_at=now,
        lines=[
            PostingLine(credits, -50),
            PostingLine(credits, 80),
            PostingLine(other_key, -30),
        ],
    )
    assert AccountKey(owner, "asset", "EUR") == credits
    assert ledger_verify().ok, _found(ledger_verify())


def test_a_breach_corrected_by_reversing_its_journal_is_no_longer_reported(owner, now, wallet):
    """The runbook's correction (docs/runbooks/ledger-verify-failing.md: reverse the offending
    journal) leaves a clean ledger: the breach stays in the entries, corrected."""
    account, other = wallet
    overdraft = _raw_journal([(account.id, 900, 2, False), (other.id, -900, 1, False)])
    breach = account.entries.get(journal_id=overdraft).id
    assert _found(ledger_verify())["limit_breached_history"] == [breach]
    Account.objects.filter(id=account.id).update(debits_must_not_exceed_credits=False)
    _sync_projections(account, other)  # (the runbook: lift the flag, ledger_rebuild)
    services.journal_reverse(journal_id=overdraft, reference=f"correction:{overdraft}", occurred_at=now)
    Account.objects.filter(id=account.id).update(debits_must_not_exceed_credits=True)
    assert ledger_verify().ok, _found(ledger_verify())
