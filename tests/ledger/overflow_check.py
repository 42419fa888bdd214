"""A posting that would take a projection (balance, debits or credits pending, version) or an entry's
`balance_after` past the 64-bit integer range is refused with `overflow` (BalanceOverflowError), as
a limit breach is: nothing written, the caller's transaction still usable, an atomic batch all or
nothing and the other journals of a non-atomic one posted, idempotency answered first.

What was wrong (session 19): PostgreSQL's posting functions raised a raw `DataError` (22003
"bigint out of range") out of the arithmetic, which aborted the caller's transaction; SQLite raised
`OverflowError` ("Python int too large to convert to SQLite INTEGER") when the projection was
written. A line holds less than 2**62, so two postings of one account could get there.

Shared by tests/ledger/test_posting_overflow.py (PostgreSQL, both engines) and
tests/ledger/sqlite_overflow_check.py (SQLite, the embedded default)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.db import connection, transaction

from ledger import selectors, services
from ledger.errors import BalanceOverflowError, HotAccountVersionError, JournalReferenceConflictError
from ledger.models import Account, Journal
from ledger.types import AccountKey, Accounts, AccountType, JournalRequest, PostStatus, transfer_lines

MAX = 2**63 - 1
MIN = -(2**63)
LINE = 2**62 - 1  # the largest amount a PostingLine takes


def _refused_as_overflow(call) -> BalanceOverflowError:
    try:
        call()
    except BalanceOverflowError as exc:
        assert exc.status is PostStatus.OVERFLOW, exc.status
        return exc
    raise AssertionError("a posting past the 64-bit range was not refused")


def _projection(key: AccountKey) -> tuple:
    row = Account.objects.get(owner=key.owner, code=key.code, currency=key.currency, parent=None)
    return row.balance, row.debits_pending, row.credits_pending, row.version


def check_a_posting_past_bigint_is_refused_as_overflow() -> None:
    tag = uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    owner = "mer_of" + tag
    big, neg, other = (AccountKey(owner, code, "EUR") for code in ("big", "neg", "other"))
    for key in (big, neg, other):
        services.account_get_or_create(key=key, type=AccountType.ASSET)

    # two postings of the largest line: big at MAX - 1, neg at MIN + 1 (in range: created)
    for n in (1, 2):
        services.journal_post(reference=f"fill{n}:{tag}", lines=transfer_lines(debit=big, credit=neg, amount=LINE),
                              occurred_at=now)  # fmt: skip
    assert _projection(big) == (MAX - 1, 0, 0, 2)
    assert _projection(neg) == (MIN + 2, 0, 0, 2)
    # the edges themselves are in range
    services.journal_post(reference=f"edge:{tag}", lines=transfer_lines(debit=big, credit=neg, amount=1),
                          occurred_at=now)  # fmt: skip
    services.journal_post(reference=f"edge2:{tag}", lines=transfer_lines(debit=other, credit=neg, amount=1),
                          occurred_at=now)  # fmt: skip
    assert _projection(big)[0] == MAX and _projection(neg)[0] == MIN
    before = {key: _projection(key) for key in (big, neg, other)}
    journals = Journal.objects.count()

    # 1. one more unit either way: refused, nothing written, and the caller's transaction goes on
    with transaction.atomic():
        _refused_as_overflow(
            lambda: services.journal_post(
                reference=f"up:{tag}", lines=transfer_lines(debit=big, credit=other, amount=1), occurred_at=now
            )
        )
        _refused_as_overflow(
            lambda: services.journal_post(
                reference=f"down:{tag}", lines=transfer_lines(debit=other, credit=neg, amount=1), occurred_at=now
            )
        )
        # usable: a posting in the same transaction goes through and commits with it
        services.journal_post(reference=f"after:{tag}", lines=transfer_lines(debit=other, credit=big, amount=5),
                              occurred_at=now)  # fmt: skip
    assert not Journal.objects.filter(reference__in=[f"up:{tag}", f"down:{tag}"]).exists()
    assert Journal.objects.count() == journals + 1
    assert _projection(neg) == before[neg]
    assert _projection(big) == (MAX - 5, 0, 0, before[big][3] + 1)

    # 2. idempotency first: a repeat of a stored journal answers exists (or conflict), though its
    #    lines would now overflow
    again = services.journal_post(reference=f"fill1:{tag}", lines=transfer_lines(debit=big, credit=neg, amount=LINE),
                                  occurred_at=now)  # fmt: skip
    assert again.status is PostStatus.EXISTS, again
    try:
        services.journal_post(reference=f"fill1:{tag}", lines=transfer_lines(debit=big, credit=neg, amount=LINE - 1),
                              occurred_at=now)  # fmt: skip
        raise AssertionError("a conflict expected")
    except JournalReferenceConflictError:
        pass

    # 3. an atomic batch: all or nothing, the overflowing journal named
    ok = JournalRequest(reference=f"b-ok:{tag}", lines=transfer_lines(debit=other, credit=big, amount=1),
                        occurred_at=now)  # fmt: skip
    over = JournalRequest(reference=f"b-over:{tag}", lines=transfer_lines(debit=big, credit=other, amount=10),
                          occurred_at=now)  # fmt: skip
    ok2 = JournalRequest(reference=f"b-ok2:{tag}", lines=transfer_lines(debit=other, credit=big, amount=2),
                         occurred_at=now)  # fmt: skip
    exc = _refused_as_overflow(lambda: services.journal_post_many([ok, over, ok2]))
    assert exc.result.index == 1, exc.result
    assert not Journal.objects.filter(reference__startswith="b-", reference__endswith=tag).exists()
    # 4. a non-atomic batch: the others are posted, in order (ok takes big to MAX - 6, then over fails)
    results = services.journal_post_many([ok, over, ok2], atomic=False)
    assert [r.status for r in results] == [PostStatus.CREATED, PostStatus.OVERFLOW, PostStatus.CREATED], results
    assert results[1].journal_id is None
    assert not Journal.objects.filter(reference=f"b-over:{tag}").exists()
    assert _projection(big)[0] == MAX - 8
    # a batch whose journals each fit but not together
    fill = [JournalRequest(reference=f"c{n}:{tag}", lines=transfer_lines(debit=big, credit=other, amount=4),
                           occurred_at=now) for n in range(3)]  # fmt: skip
    results = services.journal_post_many(fill, atomic=False)
    assert [r.status for r in results] == [PostStatus.CREATED, PostStatus.CREATED, PostStatus.OVERFLOW], results
    assert _projection(big)[0] == MAX

    # 5. debits pending: reservations add up past the range
    held = AccountKey(owner, "held", "EUR")
    services.account_get_or_create(key=held, type=AccountType.ASSET)
    pendings = [
        services.pending_create(
            reference=f"p{n}:{tag}", lines=transfer_lines(debit=held, credit=other, amount=LINE), occurred_at=now
        )  # fmt: skip
        for n in (1, 2)
    ]
    _refused_as_overflow(
        lambda: services.pending_create(
            reference=f"p3:{tag}", lines=transfer_lines(debit=held, credit=other, amount=2), occurred_at=now
        )
    )
    assert _projection(held) == (0, 2 * LINE, 0, 2)
    # 6. a post of a pending journal onto a full balance: refused, the reservation still open
    services.pending_void(pending_id=pendings[1].journal_id, reference=f"v2:{tag}", occurred_at=now)
    hold = services.pending_create(reference=f"p4:{tag}", lines=transfer_lines(debit=big, credit=other, amount=3),
                                   occurred_at=now)  # fmt: skip
    _refused_as_overflow(lambda: services.pending_post(pending_id=hold.journal_id, reference=f"post4:{tag}",
                                                      occurred_at=now))  # fmt: skip
    assert not Journal.objects.filter(reference=f"post4:{tag}").exists()
    services.pending_void(pending_id=hold.journal_id, reference=f"void4:{tag}", occurred_at=now)
    assert _projection(big)[0] == MAX

    # 7. a version at the top of the range (a hand-written projection): refused, not raised
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ledger_account SET version = %s WHERE owner = %s AND code = 'other'", [MAX, owner])
    _refused_as_overflow(
        lambda: services.journal_post(
            reference=f"ver:{tag}", lines=transfer_lines(debit=other, credit=held, amount=1), occurred_at=now
        )
    )
    assert selectors.account_balance(key=big).posted == MAX


def check_a_hot_account_has_no_single_version() -> None:
    """A hot account's entries are versioned per shard (docs/ledger.md): asked for its balance at a
    version, the selector says so and what to use instead. Before (session 19), it answered
    AccountNotFoundError "has no version 1" for a hot account with entries."""
    tag = uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    hot = Accounts.fee_revenue("CHF")
    merchant = Accounts.merchant_available("mer_hv" + tag, "CHF")
    services.journal_post(reference=f"hv:{tag}", lines=transfer_lines(debit=merchant, credit=hot, amount=7),
                          occurred_at=now)  # fmt: skip
    try:
        selectors.account_balance_at_version(key=hot, version=1)
        raise AssertionError("a hot account has no single version sequence")
    except HotAccountVersionError as exc:
        text = str(exc)
        assert "hot" in text and "shard" in text and "account_balance_at" in text, text
    # a plain account still answers, and an unknown version of it is still AccountNotFoundError
    assert selectors.account_balance_at_version(key=merchant, version=1) == 7
    assert selectors.account_balance_at_version(key=merchant, version=0) == 0
