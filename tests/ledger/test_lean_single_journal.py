"""The lean single-journal path: ledger_post_one() with the process cache of account ids
(docs/decisions/ledger-lean-single-journal.md), on PostgreSQL."""

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from ledger import engine, selectors, services
from ledger.errors import AccountFrozenError, JournalReferenceConflictError, LimitExceededError
from ledger.models import Account, AccountStatus, Entry
from ledger.types import Accounts, AccountType, PostingLine, PostStatus
from ledger.types import transfer_lines as _transfer_lines
from ledger.verify import ledger_verify
from tests.ledger.conftest import make_account

pytestmark = pytest.mark.django_db


def transfer_lines(debit, credit, amount):
    return _transfer_lines(debit=debit, credit=credit, amount=amount)


def _post(reference, lines, now):
    with CaptureQueriesContext(connection) as ctx:
        result = services.journal_post(reference=reference, lines=lines, occurred_at=now)
    return result, [q["sql"] for q in ctx.captured_queries]


def _functions(sqls):
    return ["ledger_post_one" if "ledger_post_one(" in s else "ledger_post_batch" for s in sqls]


def test_known_accounts_take_one_call_of_the_lean_function(owner, now):
    a, b = Accounts.merchant_available(owner, "EUR"), Accounts.merchant_pending(owner, "EUR")
    # new accounts: the lean function answers 'retry', ledger_post_batch() creates them
    first, sqls = _post(f"{owner}:1", transfer_lines(a, b, 100), now)
    assert first.status is PostStatus.CREATED
    assert _functions(sqls) == ["ledger_post_one", "ledger_post_batch"]
    # now known (looked up by the lean function, then cached): one call, no lookup
    engine._ACCOUNT_IDS.pop(a, None)
    second, sqls = _post(f"{owner}:2", transfer_lines(a, b, 50), now)
    assert second.status is PostStatus.CREATED and _functions(sqls) == ["ledger_post_one"]
    assert engine._ACCOUNT_IDS[a] == (Account.objects.get(owner=owner, code="merchant_available").id, False)
    third, sqls = _post(f"{owner}:3", transfer_lines(b, a, 30), now)
    assert third.status is PostStatus.CREATED and _functions(sqls) == ["ledger_post_one"]
    entries = Entry.objects.filter(journal_id=third.journal_id).order_by("id")
    assert [(e.amount, e.balance_after, e.version) for e in entries] == [(30, -120, 3), (-30, 120, 3)]
    assert selectors.account_balance(key=a).posted == 120 and selectors.account_balance(key=a).version == 3
    assert ledger_verify().ok


def test_a_cached_id_that_names_another_account_is_caught_and_posted_right(owner, now):
    a, b = make_account(owner, "wallet_a"), make_account(owner, "wallet_b")
    c = make_account(owner, "wallet_c")
    services.journal_post(reference=f"{owner}:warm", lines=transfer_lines(a, b, 10), occurred_at=now)
    c_id = Account.objects.get(owner=owner, code="wallet_c").id
    engine._ACCOUNT_IDS[a] = (c_id, False)  # stale: a's key, c's id
    result, sqls = _post(f"{owner}:1", transfer_lines(a, b, 5), now)
    assert result.status is PostStatus.CREATED
    assert _functions(sqls) == ["ledger_post_one", "ledger_post_batch"]
    assert selectors.account_balance(key=a).posted == 15 and selectors.account_balance(key=c).posted == 0
    assert a not in engine._ACCOUNT_IDS or engine._ACCOUNT_IDS[a][0] != c_id
    # a cached id that names no account at all (a re-created database under a long-lived process)
    engine._ACCOUNT_IDS[b] = (10**15, False)
    assert services.journal_post(reference=f"{owner}:2", lines=transfer_lines(a, b, 1), occurred_at=now).created
    assert selectors.account_balance(key=b).posted == -16
    # a non-hot account cached as hot: its key does not match any shard parent -> retry
    engine._ACCOUNT_IDS[b] = (Account.objects.get(owner=owner, code="wallet_b").id, True)
    assert services.journal_post(reference=f"{owner}:3", lines=transfer_lines(a, b, 1), occurred_at=now).created
    assert Entry.objects.filter(account__parent__isnull=False, journal__reference=f"{owner}:3").count() == 0
    # a hot account cached as not hot: its parent row is never written
    fee = Accounts.fee_revenue("EUR")
    services.journal_post(reference=f"{owner}:4", lines=transfer_lines(a, fee, 1), occurred_at=now)
    parent = Account.objects.get(owner=fee.owner, code=fee.code, currency="EUR", parent=None)
    engine._ACCOUNT_IDS[fee] = (parent.id, False)
    result, sqls = _post(f"{owner}:5", transfer_lines(a, fee, 1), now)
    assert result.created and _functions(sqls) == ["ledger_post_one", "ledger_post_batch"]
    assert not Entry.objects.filter(account_id=parent.id).exists()
    assert engine._ACCOUNT_IDS.get(fee, (0, True))[1] is True
    assert ledger_verify().ok


def test_refusals_on_the_lean_path_write_nothing_and_answer_idempotency_first(owner, now):
    limited = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    other = make_account(owner, "other")
    services.journal_post(reference=f"{owner}:fund", lines=transfer_lines(other, limited, 100), occurred_at=now)
    assert engine._ACCOUNT_IDS.get(limited)  # cached: what follows is the lean path
    lean = engine.stats["lean"]
    with pytest.raises(LimitExceededError) as err:
        services.journal_post(reference=f"{owner}:big", lines=transfer_lines(limited, other, 101), occurred_at=now)
    assert err.value.status is PostStatus.EXCEEDS_CREDITS
    ok = services.journal_post(reference=f"{owner}:ok", lines=transfer_lines(limited, other, 100), occurred_at=now)
    assert ok.created
    # the same reference and lines: the first journal, even though the balance no longer allows it
    again = services.journal_post(reference=f"{owner}:ok", lines=transfer_lines(limited, other, 100), occurred_at=now)
    assert again.status is PostStatus.EXISTS and again.journal_id == ok.journal_id
    with pytest.raises(JournalReferenceConflictError):
        services.journal_post(reference=f"{owner}:ok", lines=transfer_lines(limited, other, 99), occurred_at=now)
    services.account_set_status(key=other, status=AccountStatus.FROZEN)
    with pytest.raises(AccountFrozenError):
        services.journal_post(reference=f"{owner}:frozen", lines=transfer_lines(other, limited, 1), occurred_at=now)
    # idempotency before the frozen check
    again = services.journal_post(reference=f"{owner}:ok", lines=transfer_lines(limited, other, 100), occurred_at=now)
    assert again.status is PostStatus.EXISTS
    assert engine.stats["lean"] - lean == 6
    assert not Entry.objects.filter(journal__reference__in=[f"{owner}:big", f"{owner}:frozen"]).exists()
    assert selectors.account_balance(key=limited).posted == 0 and selectors.account_balance(key=limited).version == 2
    assert ledger_verify().ok


def test_hot_pending_and_reversal_on_the_lean_path(owner, now):
    fee = Accounts.fee_revenue("EUR")
    merchant = Accounts.merchant_available(owner, "EUR")
    services.journal_post(reference=f"{owner}:warm", lines=transfer_lines(merchant, fee, 1), occurred_at=now)
    lean = engine.stats["lean"]
    lines = (PostingLine(merchant, 7), PostingLine(fee, -3), PostingLine(fee, -4))  # the hot account twice
    posted = services.journal_post(reference=f"{owner}:hot", lines=lines, occurred_at=now)
    entries = list(Entry.objects.filter(journal_id=posted.journal_id).select_related("account").order_by("id"))
    assert [e.amount for e in entries] == [7, -3, -4]
    shards = {e.account_id for e in entries[1:]}
    assert len(shards) == 1 and entries[1].account.parent_id is not None
    assert entries[2].version == entries[1].version + 1
    assert entries[2].balance_after == entries[1].balance_after - 4
    rev = services.journal_reverse(journal_id=posted.journal_id, reference=f"{owner}:rev", occurred_at=now)
    assert rev.created
    pending = services.pending_create(
        reference=f"{owner}:pend", lines=transfer_lines(merchant, fee, 9), occurred_at=now
    )
    assert selectors.account_balance(key=merchant).debits_pending == 9
    assert selectors.account_balance(key=merchant).credits_pending == 0
    assert engine.stats["lean"] - lean == 3
    services.pending_post(pending_id=pending.journal_id, reference=f"{owner}:pend:post", occurred_at=now)
    assert selectors.account_balance(key=merchant).debits_pending == 0
    assert selectors.account_balance(key=merchant).posted == 10
    assert ledger_verify().ok


def test_only_identity_updates_fire_the_account_guard(owner, now):
    key = make_account(owner, "wallet")
    account = Account.objects.get(owner=owner, code="wallet")
    for sql in (
        "UPDATE ledger_account SET owner = 'mer_x' WHERE id = %s",
        "UPDATE ledger_account SET code = 'other' WHERE id = %s",
        "UPDATE ledger_account SET type = 'expense' WHERE id = %s",
        "UPDATE ledger_account SET hot = true WHERE id = %s",
        "UPDATE ledger_account SET balance = 0, parent_id = id WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="identity never changes"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, [account.id])
    with connection.cursor() as cursor:  # the same values: allowed (the WHEN clause)
        cursor.execute("UPDATE ledger_account SET owner = owner, status = status WHERE id = %s", [account.id])
    assert selectors.account_balance(key=key).posted == 0


def test_the_account_cache_is_bounded(owner, now, monkeypatch):
    a, b = make_account(owner, "wallet_a"), make_account(owner, "wallet_b")
    monkeypatch.setattr(engine, "_ACCOUNT_IDS_MAX", 3)
    monkeypatch.setattr(engine, "_ACCOUNT_IDS", {Accounts.suspense(c): (10**15, False) for c in ("EUR", "USD", "GBP")})
    assert services.journal_post(reference=f"{owner}:1", lines=transfer_lines(a, b, 1), occurred_at=now).created
    assert set(engine._ACCOUNT_IDS) == {a, b}


def test_the_lean_function_never_takes_bitmap_scans():
    # account rows are updated all the time: only plain index scans skip their dead versions
    with connection.cursor() as cursor:
        cursor.execute("SELECT proconfig FROM pg_proc WHERE proname = 'ledger_post_one'")
        (config,) = cursor.fetchone()
    assert "enable_bitmapscan=off" in config and "plan_cache_mode=force_generic_plan" in config


def test_limits_count_pending_amounts_on_the_lean_path(owner, now):
    # ledger_post_one() reads an account's pending amounts only for a pending posting or a limited
    # account (session 8): a limited account's limit must still count them
    limited = make_account(owner, "wallet", type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    asset = make_account(owner, "cash", credits_must_not_exceed_debits=True)
    other = make_account(owner, "other")
    services.journal_post(reference=f"{owner}:fund", lines=transfer_lines(other, limited, 100), occurred_at=now)
    services.journal_post(reference=f"{owner}:fund2", lines=transfer_lines(asset, other, 100), occurred_at=now)
    services.pending_create(reference=f"{owner}:hold", lines=transfer_lines(limited, other, 60), occurred_at=now)
    services.pending_create(reference=f"{owner}:hold2", lines=transfer_lines(other, asset, 30), occurred_at=now)
    lean = engine.stats["lean"]
    with pytest.raises(LimitExceededError) as err:  # -100 + 50 posted, + 60 pending > 0
        services.journal_post(reference=f"{owner}:d50", lines=transfer_lines(limited, other, 50), occurred_at=now)
    assert err.value.status is PostStatus.EXCEEDS_CREDITS
    with pytest.raises(LimitExceededError) as err:  # 30 pending - (100 - 80) posted > 0
        services.journal_post(reference=f"{owner}:c80", lines=transfer_lines(other, asset, 80), occurred_at=now)
    assert err.value.status is PostStatus.EXCEEDS_DEBITS
    assert services.journal_post(reference=f"{owner}:d40", lines=transfer_lines(limited, other, 40), occurred_at=now)
    assert services.journal_post(reference=f"{owner}:c70", lines=transfer_lines(other, asset, 70), occurred_at=now)
    assert engine.stats["lean"] - lean == 4
    # a posted journal leaves the pending amounts as they were
    wallet, cash = selectors.account_balance(key=limited), selectors.account_balance(key=asset)
    assert (wallet.posted, wallet.debits_pending, wallet.credits_pending) == (-60, 60, 0)
    assert (cash.posted, cash.debits_pending, cash.credits_pending) == (30, 0, 30)
    assert ledger_verify().ok


@pytest.mark.parametrize("stale", [0, 1, 2])
def test_a_cached_id_naming_nothing_is_caught_in_any_position(owner, now, stale):
    # the function finds a missing row by the shape of the array the locked rows fill (session 8):
    # a missing first account leaves it shorter, a missing middle one a hole
    keys = [make_account(owner, f"acc_{c}") for c in "abc"]
    lines = (PostingLine(keys[0], 2), PostingLine(keys[1], -1), PostingLine(keys[2], -1))
    services.journal_post(reference=f"{owner}:warm", lines=lines, occurred_at=now)
    assert all(engine._ACCOUNT_IDS.get(k) for k in keys)
    engine._ACCOUNT_IDS[keys[stale]] = (10**15, False)
    retries = engine.stats["lean_retry"]
    result = services.journal_post(reference=f"{owner}:1", lines=lines, occurred_at=now)
    assert result.created and engine.stats["lean_retry"] - retries == 1
    assert [selectors.account_balance(key=k).posted for k in keys] == [4, -2, -2]
    assert [selectors.account_balance(key=k).version for k in keys] == [2, 2, 2]
    assert ledger_verify().ok
