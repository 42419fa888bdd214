"""A post of a pending journal moves no more than it reserved (#4 audit finding 7), enforced by the
engine itself (ledger_post_batch's resolve loop, _post_python), not only by the pending_post
service: `exceeds_pending_amount` (TigerBeetle's exceeds_pending_transfer_amount), nothing written.
Shared by tests/ledger/test_pending_amount.py (PostgreSQL, both engines) and the SQLite check."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from ledger import engine, selectors, services
from ledger.models import Journal
from ledger.types import AccountKey, AccountType, JournalPhase, PostingLine, PostStatus, transfer_lines


def check_a_post_moves_no_more_than_reserved() -> None:
    tag = uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    wallet = AccountKey("mer_pa" + tag, "wallet", "EUR")
    services.account_get_or_create(key=wallet, type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    bank, other = AccountKey("platform", "bank_cash", "EUR"), AccountKey("platform", "suspense", "EUR")
    services.journal_post(reference=f"fund:{tag}", lines=transfer_lines(debit=bank, credit=wallet, amount=1000),
                          occurred_at=now)
    pending = services.pending_create(reference=f"p:{tag}", lines=transfer_lines(debit=wallet, credit=bank, amount=300),
                                      occurred_at=now, expires_at=now + timedelta(hours=1))
    keys = tuple(sorted({wallet, bank}))

    def post(n: str, lines) -> PostStatus:
        item = engine.Item(reference=f"post:{tag}:{n}", kind="post_pending", lines=tuple(lines), occurred_at=now,
                           phase=JournalPhase.POST_PENDING, pending_id=pending.journal_id, extra_accounts=keys)
        (result,) = engine.post([item], atomic=True)
        return result.status

    before = Journal.objects.count()
    refused = {
        "more": [PostingLine(wallet, 350), PostingLine(bank, -350)],
        "elsewhere": [PostingLine(wallet, 300), PostingLine(other, -300)],
        "reversed": [PostingLine(wallet, -100), PostingLine(bank, 100)],
    }
    for name, lines in refused.items():
        assert post(name, lines) is PostStatus.EXCEEDS_PENDING_AMOUNT, name
    assert Journal.objects.count() == before  # nothing written
    assert selectors.account_balance(key=wallet).debits_pending == 300  # the reservation stands
    assert post("part", [PostingLine(wallet, 200), PostingLine(bank, -200)]) is PostStatus.CREATED
    balance = selectors.account_balance(key=wallet)
    assert (balance.posted, balance.debits_pending) == (-800, 0)
