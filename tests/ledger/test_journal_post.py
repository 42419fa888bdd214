"""journal_post and friends through ledger.services, on PostgreSQL."""

from datetime import timedelta

import pytest
from django.db import transaction

from ledger import engine as engine_
from ledger import selectors, services
from ledger.errors import (
    AccountFrozenError,
    AccountNotFoundError,
    InvalidPostingError,
    JournalAlreadyReversedError,
    JournalReferenceConflictError,
    LimitExceededError,
    PendingStateError,
    UnbalancedJournalError,
)
from ledger.models import Account, Entry, Journal
from ledger.types import (
    AccountKey,
    Accounts,
    AccountType,
    JournalPhase,
    JournalRequest,
    PostingLine,
    PostStatus,
    transfer_lines,
)
from ledger.verify import ledger_verify
from tests.ledger.conftest import make_account

pytestmark = pytest.mark.django_db


def capture_lines(merchant: str, amount: int, fee: int, currency: str = "EUR"):
    return (
        PostingLine.debit(Accounts.psp_receivable("alpha", currency), amount),
        PostingLine.credit(Accounts.merchant_pending(merchant, currency), amount - fee),
        PostingLine.credit(Accounts.fee_revenue(currency), fee),
    )


def test_capture_posts_balanced_journal_and_balances(owner, now):
    result = services.journal_post(
        reference=f"capture:{owner}", lines=capture_lines(owner, 1000, 30), occurred_at=now, kind="capture"
    )
    assert result.status is PostStatus.CREATED
    journal = selectors.journal_get(journal_id=result.journal_id)
    assert journal.kind == "capture" and journal.entries.count() == 3
    balance = selectors.balance_get(owner=owner)
    assert [(m.amount, m.currency) for m in balance.pending] == [(970, "EUR")]
    assert balance.available == () and balance.escrow == ()
    assert selectors.account_balance(key=Accounts.fee_revenue("EUR")).posted <= -30
    assert ledger_verify().ok


def test_capture_twice_posts_one_journal(owner, now):
    first = services.journal_post(reference=f"c:{owner}", lines=capture_lines(owner, 500, 5), occurred_at=now)
    again = services.journal_post(reference=f"c:{owner}", lines=capture_lines(owner, 500, 5), occurred_at=now)
    assert again.status is PostStatus.EXISTS and again.journal_id == first.journal_id
    assert Journal.objects.filter(reference=f"c:{owner}").count() == 1
    assert selectors.balance_get(owner=owner).pending[0].amount == 495


def test_same_reference_other_lines_conflicts(owner, now):
    services.journal_post(reference=f"c:{owner}", lines=capture_lines(owner, 500, 5), occurred_at=now)
    with pytest.raises(JournalReferenceConflictError):
        services.journal_post(reference=f"c:{owner}", lines=capture_lines(owner, 500, 6), occurred_at=now)
    assert selectors.balance_get(owner=owner).pending[0].amount == 495


def test_unbalanced_lines_are_refused_before_the_database(owner, now):
    lines = (PostingLine.debit(Accounts.bank_cash("EUR"), 10), PostingLine.credit(Accounts.suspense("EUR"), 9))
    with pytest.raises(UnbalancedJournalError):
        services.journal_post(reference=f"u:{owner}", lines=lines, occurred_at=now)
    assert not Journal.objects.filter(reference=f"u:{owner}").exists()


def test_lines_must_balance_per_currency(owner, now):
    lines = (
        PostingLine.debit(Accounts.bank_cash("EUR"), 10),
        PostingLine.credit(Accounts.suspense("USD"), 10),
    )
    with pytest.raises(UnbalancedJournalError):
        services.journal_post(reference=f"u:{owner}", lines=lines, occurred_at=now)


def test_posting_line_rejects_zero_float_and_bad_currency():
    with pytest.raises(ValueError):
        PostingLine(Accounts.bank_cash("EUR"), 0)
    with pytest.raises(TypeError):
        PostingLine(Accounts.bank_cash("EUR"), 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Accounts.bank_cash("eur")


def test_unknown_non_chart_account_is_not_created(owner, now):
    lines = transfer_lines(debit=AccountKey(owner, "nope", "EUR"), credit=Accounts.suspense("EUR"), amount=5)
    with pytest.raises(AccountNotFoundError):
        services.journal_post(reference=f"n:{owner}", lines=lines, occurred_at=now)


def test_limited_account_refuses_overdraft_and_writes_nothing(owner, now):
    wallet = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    source = make_account(owner, "source")
    services.journal_post(
        reference=f"fund:{owner}", lines=transfer_lines(debit=source, credit=wallet, amount=100), occurred_at=now
    )
    services.journal_post(
        reference=f"w1:{owner}", lines=transfer_lines(debit=wallet, credit=source, amount=60), occurred_at=now
    )
    with pytest.raises(LimitExceededError) as err:
        services.journal_post(
            reference=f"w2:{owner}", lines=transfer_lines(debit=wallet, credit=source, amount=41), occurred_at=now
        )
    assert err.value.status is PostStatus.EXCEEDS_CREDITS
    assert not Journal.objects.filter(reference=f"w2:{owner}").exists()
    assert selectors.account_balance(key=wallet).posted == -40


def test_credits_must_not_exceed_debits(owner, now):
    asset = make_account(owner, "cash", credits_must_not_exceed_debits=True)
    other = make_account(owner, "other", type=AccountType.EQUITY)
    with pytest.raises(LimitExceededError) as err:
        services.journal_post(
            reference=f"x:{owner}", lines=transfer_lines(debit=other, credit=asset, amount=1), occurred_at=now
        )
    assert err.value.status is PostStatus.EXCEEDS_DEBITS


def test_frozen_account_refuses_postings(owner, now):
    from ledger.models import AccountStatus

    key = Accounts.merchant_available(owner, "EUR")
    services.account_get_or_create(key=key)
    services.account_set_status(key=key, status=AccountStatus.FROZEN)
    with pytest.raises(AccountFrozenError):
        services.journal_post(
            reference=f"f:{owner}",
            lines=transfer_lines(debit=Accounts.bank_cash("EUR"), credit=key, amount=1),
            occurred_at=now,
        )


def test_reverse_posts_mirror_once(owner, now):
    posted = services.journal_post(reference=f"c:{owner}", lines=capture_lines(owner, 1000, 30), occurred_at=now)
    rev = services.journal_reverse(journal_id=posted.journal_id, reference=f"rev:{owner}", occurred_at=now)
    assert rev.status is PostStatus.CREATED
    assert Journal.objects.get(id=rev.journal_id).reverses_id == posted.journal_id
    assert selectors.balance_get(owner=owner).pending[0].amount == 0
    again = services.journal_reverse(journal_id=posted.journal_id, reference=f"rev:{owner}", occurred_at=now)
    assert again.status is PostStatus.EXISTS
    with pytest.raises(JournalAlreadyReversedError):
        services.journal_reverse(journal_id=posted.journal_id, reference=f"rev2:{owner}", occurred_at=now)


def _requests(owner, now, n, amount=10):
    src, dst = Accounts.merchant_pending(owner, "EUR"), Accounts.merchant_available(owner, "EUR")
    return [
        JournalRequest(
            reference=f"b:{owner}:{i}", lines=transfer_lines(debit=src, credit=dst, amount=amount), occurred_at=now
        )
        for i in range(n)
    ]


def test_batch_posts_all_in_one_call(owner, now, django_assert_max_num_queries):
    with django_assert_max_num_queries(1):
        results = services.journal_post_many(_requests(owner, now, 50))
    assert [r.status for r in results] == [PostStatus.CREATED] * 50
    assert selectors.balance_get(owner=owner).available[0].amount == 500
    # replay: all exist
    again = services.journal_post_many(_requests(owner, now, 50))
    assert {r.status for r in again} == {PostStatus.EXISTS}
    assert ledger_verify().ok


def test_atomic_batch_failure_posts_nothing(owner, now):
    wallet = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    src = make_account(owner, "src")
    reqs = [
        JournalRequest(
            reference=f"a:{owner}:1", lines=transfer_lines(debit=src, credit=wallet, amount=10), occurred_at=now
        ),
        JournalRequest(
            reference=f"a:{owner}:2", lines=transfer_lines(debit=wallet, credit=src, amount=11), occurred_at=now
        ),
        JournalRequest(
            reference=f"a:{owner}:3", lines=transfer_lines(debit=src, credit=wallet, amount=10), occurred_at=now
        ),
    ]
    with pytest.raises(LimitExceededError):
        services.journal_post_many(reqs)
    assert not Journal.objects.filter(reference__startswith=f"a:{owner}").exists()
    assert selectors.account_balance(key=wallet).posted == 0
    results = services.journal_post_many(reqs, atomic=False)
    assert [r.status for r in results] == [PostStatus.CREATED, PostStatus.EXCEEDS_CREDITS, PostStatus.CREATED]
    assert selectors.account_balance(key=wallet).posted == -20
    assert ledger_verify().ok


def test_posting_inside_caller_transaction_rolls_back_with_it(owner, now):
    with pytest.raises(RuntimeError), transaction.atomic():
        services.journal_post(reference=f"c:{owner}", lines=capture_lines(owner, 100, 1), occurred_at=now)
        raise RuntimeError("the caller's transition failed")
    assert not Journal.objects.filter(reference=f"c:{owner}").exists()


def test_caller_can_catch_a_refusal_and_continue_its_transaction(owner, now):
    wallet = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    src = make_account(owner, "src")
    with transaction.atomic():
        with pytest.raises(LimitExceededError):
            services.journal_post(
                reference=f"w:{owner}", lines=transfer_lines(debit=wallet, credit=src, amount=1), occurred_at=now
            )
        services.journal_post(
            reference=f"d:{owner}", lines=transfer_lines(debit=src, credit=wallet, amount=1), occurred_at=now
        )
    assert selectors.account_balance(key=wallet).posted == -1


def test_hot_account_spreads_over_shards_and_sums(owner, now):
    for i in range(5):
        services.journal_post(reference=f"c:{owner}:{i}", lines=capture_lines(owner, 100, 10), occurred_at=now)
    fee = Account.objects.get(owner="platform", code="fee_revenue", currency="EUR", parent=None)
    assert fee.shards == 16 and fee.balance == 0 and fee.version == 0
    assert Account.objects.filter(parent=fee).count() == 16
    assert not Entry.objects.filter(account=fee).exists()
    shard_total = sum(Account.objects.filter(parent=fee).values_list("balance", flat=True))
    assert selectors.account_balance(key=Accounts.fee_revenue("EUR")).posted == shard_total
    assert ledger_verify().ok


def test_entries_carry_balance_after_and_gapless_versions(owner, now):
    src, dst = Accounts.merchant_pending(owner, "EUR"), Accounts.merchant_available(owner, "EUR")
    for i, amount in enumerate([5, 7, 11]):
        services.journal_post(
            reference=f"v:{owner}:{i}", lines=transfer_lines(debit=src, credit=dst, amount=amount), occurred_at=now
        )
    rows = list(
        Entry.objects.filter(account__owner=owner, account__code="merchant_available")
        .order_by("version")
        .values_list("version", "balance_after")
    )
    assert rows == [(1, -5), (2, -12), (3, -23)]
    assert selectors.account_balance_at_version(key=dst, version=2) == -12
    assert selectors.account_balance_at(key=dst, at=now + timedelta(days=1)) == -23
    assert selectors.account_balance_at(key=dst, at=now - timedelta(days=1)) == 0


def test_balance_transaction_list_newest_first(owner, now):
    services.journal_post(reference=f"c:{owner}:1", lines=capture_lines(owner, 100, 1), occurred_at=now)
    services.journal_post(reference=f"c:{owner}:2", lines=capture_lines(owner, 200, 2), occurred_at=now)
    rows = list(selectors.balance_transaction_list(owner=owner))
    assert [r.amount for r in rows] == [-198, -99]
    assert rows[0].created_at is not None and rows[0].reference == f"c:{owner}:2"
    assert list(selectors.balance_transaction_list(owner="mer_other")) == []


def test_pending_post_partial_and_release(owner, now):
    wallet = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    out = make_account(owner, "out")
    services.journal_post(
        reference=f"fund:{owner}", lines=transfer_lines(debit=out, credit=wallet, amount=100), occurred_at=now
    )
    p = services.pending_create(
        reference=f"p:{owner}",
        lines=transfer_lines(debit=wallet, credit=out, amount=80),
        occurred_at=now,
        expires_at=now + timedelta(hours=1),
    )
    assert selectors.account_balance(key=wallet).debits_pending == 80
    with pytest.raises(LimitExceededError):  # the reservation counts against the limit
        services.journal_post(
            reference=f"w:{owner}", lines=transfer_lines(debit=wallet, credit=out, amount=21), occurred_at=now
        )
    posted = services.pending_post(
        pending_id=p.journal_id,
        reference=f"pp:{owner}",
        occurred_at=now,
        lines=transfer_lines(debit=wallet, credit=out, amount=50),
    )
    assert posted.status is PostStatus.CREATED
    bal = selectors.account_balance(key=wallet)
    assert (bal.posted, bal.debits_pending) == (-50, 0)
    with pytest.raises(PendingStateError):
        services.pending_void(pending_id=p.journal_id, reference=f"pv:{owner}", occurred_at=now)
    with pytest.raises(InvalidPostingError):
        services.pending_post(
            pending_id=p.journal_id,
            reference=f"pp2:{owner}",
            occurred_at=now,
            lines=transfer_lines(debit=wallet, credit=out, amount=81),
        )
    assert ledger_verify().ok


def test_pending_void_releases(owner, now):
    src, dst = Accounts.merchant_available(owner, "EUR"), Accounts.payouts_in_transit("EUR")
    p = services.pending_create(
        reference=f"p:{owner}", lines=transfer_lines(debit=src, credit=dst, amount=30), occurred_at=now
    )
    assert selectors.balance_get(owner=owner).available[0].amount == -30
    services.pending_void(pending_id=p.journal_id, reference=f"v:{owner}", occurred_at=now)
    assert selectors.account_balance(key=src).debits_pending == 0
    assert ledger_verify().ok


def test_expired_pending_cannot_post_and_is_voided_by_the_task(owner, now):
    from ledger.tasks import pending_expire_task

    src, dst = Accounts.merchant_escrow(owner, "EUR"), Accounts.merchant_available(owner, "EUR")
    p = services.pending_create(
        reference=f"p:{owner}",
        lines=transfer_lines(debit=src, credit=dst, amount=30),
        occurred_at=now,
        expires_at=now - timedelta(seconds=1),
    )
    with pytest.raises(PendingStateError) as err:
        services.pending_post(pending_id=p.journal_id, reference=f"pp:{owner}", occurred_at=now)
    assert err.value.status is PostStatus.PENDING_EXPIRED
    assert pending_expire_task.apply().get() >= 1
    assert Journal.objects.get(pending_id=p.journal_id).reference == f"expire:p:{owner}"
    assert selectors.account_balance(key=src).debits_pending == 0
    assert pending_expire_task.apply().get() == 0
    assert ledger_verify().ok


@pytest.mark.parametrize("engine", ["postgresql", "python"])
def test_same_reference_twice_in_one_batch(owner, now, settings, engine):
    settings.LEDGER_ENGINE = engine
    src, dst = Accounts.merchant_pending(owner, "EUR"), Accounts.merchant_available(owner, "EUR")
    same = transfer_lines(debit=src, credit=dst, amount=5)
    other = transfer_lines(debit=src, credit=dst, amount=6)
    reqs = [
        JournalRequest(reference=f"d:{owner}", lines=same, occurred_at=now),
        JournalRequest(reference=f"d:{owner}", lines=same, occurred_at=now),
        JournalRequest(reference=f"d:{owner}", lines=other, occurred_at=now),
    ]
    results = services.journal_post_many(reqs, atomic=False)
    assert [r.status for r in results] == [PostStatus.CREATED, PostStatus.EXISTS, PostStatus.REFERENCE_CONFLICT]
    assert results[1].journal_id == results[0].journal_id
    assert selectors.balance_get(owner=owner).available[0].amount == 5
    assert ledger_verify().ok


@pytest.mark.parametrize("engine", ["postgresql", "python"])
def test_batch_answers_stored_repeated_and_second_resolutions_in_one_call(owner, now, settings, engine):
    """A multi-journal batch (set-based on PostgreSQL): stored references answer exists/conflict,
    a repeat whose first occurrence was refused is posted, a second resolution of one pending journal
    and a second reversal of one journal are refused -- as journal by journal."""
    settings.LEDGER_ENGINE = engine
    wallet = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    src = make_account(owner, "src")
    stored = services.journal_post(
        reference=f"s:{owner}", lines=transfer_lines(debit=src, credit=wallet, amount=10), occurred_at=now
    )
    reversed_ = services.journal_post(
        reference=f"r:{owner}", lines=transfer_lines(debit=src, credit=wallet, amount=1), occurred_at=now
    )
    pending = services.pending_create(
        reference=f"p:{owner}", lines=transfer_lines(debit=wallet, credit=src, amount=4), occurred_at=now
    )
    reqs = [
        JournalRequest(
            reference=f"s:{owner}", lines=transfer_lines(debit=src, credit=wallet, amount=10), occurred_at=now
        ),
        JournalRequest(
            reference=f"s:{owner}", lines=transfer_lines(debit=src, credit=wallet, amount=11), occurred_at=now
        ),
        # overdraws the wallet (11 - 4 reserved = 7 available): refused ...
        JournalRequest(
            reference=f"x:{owner}", lines=transfer_lines(debit=wallet, credit=src, amount=8), occurred_at=now
        ),
        # ... so its repeat is a first posting, and this one fits
        JournalRequest(
            reference=f"x:{owner}", lines=transfer_lines(debit=wallet, credit=src, amount=7), occurred_at=now
        ),
        JournalRequest(
            reference=f"x:{owner}", lines=transfer_lines(debit=wallet, credit=src, amount=7), occurred_at=now
        ),
    ]
    results = services.journal_post_many(reqs, atomic=False)
    assert [r.status for r in results] == [
        PostStatus.EXISTS,
        PostStatus.REFERENCE_CONFLICT,
        PostStatus.EXCEEDS_CREDITS,
        PostStatus.CREATED,
        PostStatus.EXISTS,
    ]
    assert results[0].journal_id == results[1].journal_id == stored.journal_id
    assert results[2].journal_id is None and results[4].journal_id == results[3].journal_id
    assert selectors.account_balance(key=wallet).posted == -11 + 7

    # no public service resolves or reverses in a batch, but the engine must refuse the second one
    # in the same call as journal by journal
    keys = (src, wallet)
    voids = [
        engine_.Item(
            reference=f"v:{owner}:{n}",
            kind="void_pending",
            lines=(),
            occurred_at=now,
            phase=JournalPhase.VOID_PENDING,
            pending_id=pending.journal_id,
            extra_accounts=keys,
        )
        for n in range(2)
    ]
    mirror = tuple(
        PostingLine(line.account, -line.amount) for line in transfer_lines(debit=src, credit=wallet, amount=1)
    )
    reversals = [
        engine_.Item(
            reference=f"rr:{owner}:{n}",
            kind="reversal",
            lines=mirror,
            occurred_at=now,
            reverses_id=reversed_.journal_id,
        )
        for n in range(2)
    ]
    results = engine_.post([*voids, *reversals], atomic=False)
    assert [r.status for r in results] == [
        PostStatus.CREATED,
        PostStatus.PENDING_ALREADY_RESOLVED,
        PostStatus.CREATED,
        PostStatus.ALREADY_REVERSED,
    ]
    again = engine_.post([voids[1], reversals[1]], atomic=False)  # now stored: refused the same way
    assert [r.status for r in again] == [PostStatus.PENDING_ALREADY_RESOLVED, PostStatus.ALREADY_REVERSED]
    balance = selectors.account_balance(key=wallet)
    assert (balance.posted, balance.debits_pending) == (-4 + 1, 0)  # the reversal gave 1 back
    assert ledger_verify().ok


@pytest.mark.parametrize("engine", ["postgresql", "python"])
def test_atomic_batch_refused_at_its_500th_journal_writes_nothing(owner, now, settings, engine):
    settings.LEDGER_ENGINE = engine
    wallet = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    src = make_account(owner, "src")
    services.journal_post(
        reference=f"f:{owner}", lines=transfer_lines(debit=src, credit=wallet, amount=499), occurred_at=now
    )
    reqs = [
        JournalRequest(
            reference=f"o:{owner}:{i}", lines=transfer_lines(debit=wallet, credit=src, amount=1), occurred_at=now
        )
        for i in range(1000)
    ]
    with transaction.atomic():
        with pytest.raises(LimitExceededError) as refused:
            services.journal_post_many(reqs)
        assert refused.value.result.index == 499  # the 500th journal: the wallet held 499
        # the caller's transaction is still usable, and nothing of the batch was written
        assert not Journal.objects.filter(reference__startswith=f"o:{owner}:").exists()
        services.journal_post(
            reference=f"g:{owner}", lines=transfer_lines(debit=wallet, credit=src, amount=1), occurred_at=now
        )
    balance = selectors.account_balance(key=wallet)
    assert balance.posted == -498 and balance.version == 2
    results = services.journal_post_many(reqs, atomic=False)
    assert [r.status for r in results].count(PostStatus.CREATED) == 498
    assert results[498].status is PostStatus.EXCEEDS_CREDITS
    assert ledger_verify().ok
