"""A repeated reference answers `exists` (the same journal) or `reference_conflict`, on every path
that meets one: ledger_post_one, ledger_post_batch for one journal and set-based (a stored journal,
or a repeat earlier in the same batch), ledger_post_batch_atomic's overflow rerun, and the Python
engine. The same journal: the same phase, pending journal resolved, journal reversed and lines (a
multiset of logical account and amount). One comparison decides it on PostgreSQL since migration
0016 (ledger_same_posting / ledger_same_journal); each case here fails when that comparison, or a
path's arguments to it, are wrong (session 20: checked by making the functions answer true, and
false)."""

import random
import string
from dataclasses import replace

import pytest

from ledger import engine
from ledger.engine import Item
from ledger.models import Account
from ledger.types import Accounts, AccountType, JournalPhase, PostingLine, PostStatus, transfer_lines
from tests.ledger.conftest import make_account

pytestmark = pytest.mark.django_db

EXISTS, CONFLICT = PostStatus.EXISTS, PostStatus.REFERENCE_CONFLICT

# (case, expected): the first journal with the reference, then its repeat (built below)
CASES = [
    ("same", EXISTS),
    ("same_lines_other_order", EXISTS),
    ("hot_account_same", EXISTS),
    ("void_same", EXISTS),
    ("other_amount", CONFLICT),
    ("other_account", CONFLICT),
    ("lines_split", CONFLICT),
    ("other_phase", CONFLICT),
    ("reverses_vs_plain", CONFLICT),
    ("plain_vs_reverses", CONFLICT),
    ("lines_doubled", CONFLICT),
    ("other_pending", CONFLICT),
    ("void_other_pending", CONFLICT),
]

# (engine, route): how the repeat is posted. The first journal is posted before it (stored), or
# "in_batch": first in the same call.
ROUTES = [
    *(("postgresql", route) for route in ("one", "single_batch", "set_based", "in_batch")),
    *(("python", route) for route in ("one", "set_based", "in_batch")),
]


def _post(items, *, atomic=False):
    return engine.post(items, atomic=atomic)


def _item(ref, now, lines, **kw) -> Item:
    return Item(reference=ref, kind="transfer", lines=tuple(lines), occurred_at=now, **kw)


def _case(case, owner, now):
    """(first, repeat) of one reference; pending and reversed journals they name are posted here."""
    a, b, c = (make_account(owner, code) for code in ("a", "b", "c"))
    ref = f"r:{case}:{owner}"
    t5 = transfer_lines(debit=a, credit=b, amount=5)
    plain = _item(ref, now, t5)
    if case == "same":
        return plain, plain
    if case == "same_lines_other_order":
        return plain, replace(plain, lines=t5[::-1])
    if case == "hot_account_same":
        hot = make_account(owner, "hot", type=AccountType.REVENUE, hot=True)
        first = _item(ref, now, transfer_lines(debit=a, credit=hot, amount=5))
        return first, first
    if case == "other_amount":
        return plain, replace(plain, lines=transfer_lines(debit=a, credit=b, amount=6))
    if case == "other_account":
        return plain, replace(plain, lines=transfer_lines(debit=a, credit=c, amount=5))
    if case == "lines_split":
        return plain, replace(plain, lines=(PostingLine.debit(a, 2), PostingLine.debit(a, 3), PostingLine.credit(b, 5)))
    if case == "lines_doubled":  # the same (account, amount) pairs, twice each: a multiset differs
        return plain, replace(plain, lines=(*t5, *t5))
    if case == "other_phase":
        return replace(plain, phase=JournalPhase.PENDING), plain
    if case in ("reverses_vs_plain", "plain_vs_reverses"):
        (x,) = _post([_item(f"x:{owner}", now, t5)])
        undo = _item(ref, now, transfer_lines(debit=b, credit=a, amount=5))
        reversal = replace(undo, reverses_id=x.journal_id)
        # plain_vs_reverses: the repeat names the journal it reverses (ledger_post_one's p_reverses)
        return (reversal, undo) if case == "reverses_vs_plain" else (undo, reversal)
    # resolutions of one of two pending journals with the same lines
    p1, p2 = (_post([_item(f"p{n}:{owner}", now, t5, phase=JournalPhase.PENDING)])[0].journal_id for n in (1, 2))
    if case == "other_pending":
        first = _item(ref, now, t5, phase=JournalPhase.POST_PENDING, pending_id=p1, extra_accounts=(a, b))
        return first, replace(first, pending_id=p2)
    void = _item(ref, now, (), phase=JournalPhase.VOID_PENDING, pending_id=p1, extra_accounts=(a, b))
    if case == "void_same":
        return void, void
    assert case == "void_other_pending", case
    return void, replace(void, pending_id=p2)


@pytest.mark.parametrize(("engine_name", "route"), ROUTES)
@pytest.mark.parametrize(("case", "expected"), CASES)
def test_a_repeated_reference_is_the_same_journal_or_a_conflict(
    owner, now, settings, engine_name, route, case, expected
):
    settings.LEDGER_ENGINE = engine_name
    first, repeat = _case(case, owner, now)
    if route == "in_batch":
        results = _post([first, repeat])
        assert results[0].status is PostStatus.CREATED, results
        got, journal_id = results[1], results[0].journal_id
    else:
        (stored,) = _post([first])
        assert stored.status is PostStatus.CREATED, stored
        journal_id = stored.journal_id
        if route == "one":
            (got,) = _post([repeat])
        elif route == "single_batch":  # not ledger_post_one: ledger_post_batch for one journal
            spare = make_account(owner, "spare")
            (got,) = _post([replace(repeat, extra_accounts=(*repeat.extra_accounts, spare))])
        else:  # a batch of several: set-based on PostgreSQL
            d, e = make_account(owner, "d"), make_account(owner, "e")
            other = _item(f"other:{owner}", now, transfer_lines(debit=d, credit=e, amount=1))
            got = _post([repeat, other])[0]
    assert got.status is expected, got
    assert got.journal_id == journal_id


# The overflow rerun (ledger_post_batch_atomic, migration 0015): a repeat whose lines would take a
# balance past bigint is answered by its reference first.
LINE = 2**62 - 1


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("same", EXISTS),
        ("other_amount", CONFLICT),
        ("other_account", CONFLICT),
        ("pending_then_posted", CONFLICT),
        ("more_lines_on_a_new_account", CONFLICT),
    ],
)
def test_a_repeat_that_would_overflow_is_answered_by_its_reference(owner, now, settings, case, expected):
    settings.LEDGER_ENGINE = "postgresql"
    big, neg, other = (make_account(owner, code) for code in ("big", "neg", "other"))
    new_suspense = Accounts.suspense("".join(random.choices(string.ascii_uppercase, k=3)))
    while Account.objects.filter(owner=new_suspense.owner, code=new_suspense.code, currency=new_suspense.currency):
        new_suspense = Accounts.suspense("".join(random.choices(string.ascii_uppercase, k=3)))
    fill = [_item(f"fill{n}:{owner}", now, transfer_lines(debit=big, credit=neg, amount=LINE)) for n in (1, 2)]
    held = _item(f"held:{owner}", now, transfer_lines(debit=big, credit=neg, amount=LINE), phase=JournalPhase.PENDING)
    stored = [_post([item])[0] for item in (*fill, held)]
    assert [r.status for r in stored] == [PostStatus.CREATED] * 3, stored
    first, journal_id = fill[0], stored[0].journal_id
    repeat = {
        "same": first,
        "other_amount": replace(first, lines=transfer_lines(debit=big, credit=neg, amount=LINE - 1)),
        "other_account": replace(first, lines=transfer_lines(debit=big, credit=other, amount=LINE)),
        "pending_then_posted": replace(held, phase=JournalPhase.POSTED),
        # (session 20) lines on a chart account the repeat creates (the rerun undoes the creation):
        # on main the rerun's inner join on the account's key dropped them and answered exists
        "more_lines_on_a_new_account": replace(
            first, lines=(*first.lines, PostingLine.debit(new_suspense, 1), PostingLine.credit(new_suspense, 1))
        ),
    }[case]
    if case == "pending_then_posted":
        journal_id = stored[2].journal_id
    (new,) = _post([_item(f"new:{owner}", now, transfer_lines(debit=big, credit=neg, amount=LINE))])
    assert new.status is PostStatus.OVERFLOW, new  # (the repeat's lines overflow too)
    (got,) = _post([repeat])
    assert got.status is expected, got
    assert got.journal_id == journal_id
