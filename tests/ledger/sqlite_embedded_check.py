"""Run by test_sqlite_embedded.py in a subprocess on a fresh SQLite file (the embedded default):
the ledger's services, refusals and triggers there. Prints OK or raises."""

from datetime import UTC, datetime, timedelta

from tests.ledger.sqlite_script import setup

setup()

from django.core.management import call_command  # noqa: E402
from django.db import DatabaseError, connection, transaction  # noqa: E402

from ledger import selectors, services  # noqa: E402
from ledger.errors import (  # noqa: E402
    JournalReferenceConflictError,
    LimitExceededError,
    PendingStateError,
)
from ledger.models import Account, Entry  # noqa: E402
from ledger.types import AccountKey, Accounts, AccountType, JournalRequest, PostingLine, transfer_lines  # noqa: E402
from ledger.verify import ledger_verify  # noqa: E402

now = datetime.now(UTC)
m = "mer_sqlite"
capture = (
    PostingLine.debit(Accounts.psp_receivable("alpha", "EUR"), 1000),
    PostingLine.credit(Accounts.merchant_pending(m, "EUR"), 970),
    PostingLine.credit(Accounts.fee_revenue("EUR"), 30),
)
first = services.journal_post(reference="capture:1", lines=capture, occurred_at=now, kind="capture")
assert services.journal_post(reference="capture:1", lines=capture, occurred_at=now).journal_id == first.journal_id
try:
    services.journal_post(
        reference="capture:1",
        lines=capture[:1] + (PostingLine.credit(Accounts.merchant_pending(m, "EUR"), 1000),),
        occurred_at=now,
    )
    raise AssertionError("conflict expected")
except JournalReferenceConflictError:
    pass
assert selectors.balance_get(owner=m).pending[0].amount == 970

wallet = AccountKey(m, "wallet", "EUR")
services.account_get_or_create(key=wallet, type=AccountType.LIABILITY, debits_must_not_exceed_credits=True)
src = Accounts.merchant_pending(m, "EUR")
services.journal_post(reference="fund", lines=transfer_lines(debit=src, credit=wallet, amount=100), occurred_at=now)
try:
    services.journal_post(reference="over", lines=transfer_lines(debit=wallet, credit=src, amount=101), occurred_at=now)
    raise AssertionError("limit expected")
except LimitExceededError:
    pass
reqs = [
    JournalRequest(reference=f"b{i}", lines=transfer_lines(debit=wallet, credit=src, amount=60), occurred_at=now)
    for i in range(2)
]
try:
    services.journal_post_many(reqs)
    raise AssertionError("atomic batch must fail")
except LimitExceededError:
    pass
assert [r.status.value for r in services.journal_post_many(reqs, atomic=False)] == ["created", "exceeds_credits"]

p = services.pending_create(
    reference="p1",
    lines=transfer_lines(debit=wallet, credit=src, amount=30),
    occurred_at=now,
    expires_at=now + timedelta(hours=1),
)
services.pending_post(
    pending_id=p.journal_id,
    reference="p1:post",
    occurred_at=now,
    lines=transfer_lines(debit=wallet, credit=src, amount=20),
)
try:
    services.pending_void(pending_id=p.journal_id, reference="p1:void", occurred_at=now)
    raise AssertionError("already resolved")
except PendingStateError:
    pass
services.pending_create(
    reference="p2",
    lines=transfer_lines(debit=wallet, credit=src, amount=5),
    occurred_at=now,
    expires_at=now - timedelta(seconds=1),
)
assert services.pending_expire_due() == 1
services.journal_reverse(journal_id=first.journal_id, reference="capture:1:reverse", occurred_at=now)
assert selectors.account_balance(key=wallet).posted == -20

for sql in (
    "UPDATE ledger_entry SET amount = 1",
    "DELETE FROM ledger_entry",
    "UPDATE ledger_journal SET memo = 'x'",
    "DELETE FROM ledger_journal",
    "DELETE FROM ledger_account",
    "UPDATE ledger_account SET currency = 'USD'",
    "UPDATE ledger_account SET status = 'weird'",  # active or frozen (CHECK ledger_account_status_valid)
):
    try:
        with transaction.atomic(), connection.cursor() as c:
            c.execute(sql)
        raise AssertionError(f"refused expected: {sql}")
    except DatabaseError:
        pass
account = Account.objects.get(owner=m, code="wallet")
try:
    with transaction.atomic(), connection.cursor() as c:
        c.execute(
            "INSERT INTO ledger_entry (journal_id, account_id, currency, amount, balance_after, version,"
            " is_pending) VALUES (%s, %s, 'USD', 1, 1, 99, 0)",
            [10**9, account.id],  # a journal not written yet (an existing one is sealed: refused anyway)
        )
    raise AssertionError("currency mismatch must be refused")
except DatabaseError:
    pass

from tests.ledger.pending_amount_check import check_a_post_moves_no_more_than_reserved  # noqa: E402

check_a_post_moves_no_more_than_reserved()

from tests.ledger.pending_resolved_check import check_a_resolved_pending_journal_answers_already_resolved  # noqa: E402

check_a_resolved_pending_journal_answers_already_resolved()

from tests.ledger.posting_text_check import check_text_a_database_cannot_store_is_refused_alike  # noqa: E402

check_text_a_database_cannot_store_is_refused_alike()

from tests.ledger.pending_clock_check import (  # noqa: E402
    check_an_app_clock_ahead_does_not_expire_a_hold_early,
    check_an_app_clock_behind_expires_a_hold_on_time,
)

check_an_app_clock_ahead_does_not_expire_a_hold_early()
check_an_app_clock_behind_expires_a_hold_on_time()

from tests.ledger.booked_at_check import (  # noqa: E402
    check_a_balance_at_an_instant_counts_the_journals_booked_then,
    check_a_cursor_walk_lists_every_entry_once,
)

check_a_cursor_walk_lists_every_entry_once()
check_a_balance_at_an_instant_counts_the_journals_booked_then()

report = ledger_verify()
assert report.ok, report.problems
Account.objects.filter(id=account.id).update(balance=-21)
assert ledger_verify().problems["projection_mismatch"] == [account.id]
assert services.ledger_rebuild().frozen == ()
assert ledger_verify().ok

# Raw SQL past the services: a balanced journal that overdraws the limited wallet (its entries
# first, then the journal row that seals them: docs/decisions/ledger-sqlite-journal-seal.md). A
# journal without entries is refused by SQLite (the seal), so journals_without_entries stays empty.
# One transaction: in autocommit each INSERT commits alone, and entries without their journal are
# refused at that commit.
other = Account.objects.get(owner=m, code="merchant_pending", currency="EUR")
with transaction.atomic(), connection.cursor() as c:
    c.execute("SELECT max(id) + 1 FROM ledger_journal")
    (overdraw,) = c.fetchone()
    for acc, amount in ((account, 100_000), (other, -100_000)):
        acc.refresh_from_db()
        c.execute(
            "INSERT INTO ledger_entry (journal_id, account_id, currency, amount, balance_after, version, is_pending)"
            " VALUES (%s, %s, 'EUR', %s, %s, %s, 0)",
            [overdraw, acc.id, amount, acc.balance + amount, acc.version + 1],
        )
    c.execute(
        "INSERT INTO ledger_journal (id, reference, kind, phase, memo, metadata, occurred_at)"
        " VALUES (%s, 'raw:overdraw', 'adjustment', 0, '', '{}', '2026-01-01')",
        [overdraw],
    )
try:
    with transaction.atomic(), connection.cursor() as c:
        c.execute(
            "INSERT INTO ledger_journal (reference, kind, phase, memo, metadata, occurred_at)"
            " VALUES ('raw:empty', 'adjustment', 0, '', '{}', '2026-01-01')"
        )
    raise AssertionError("a journal without entries must be refused")
except DatabaseError:
    pass
report = ledger_verify()
assert report.problems["limit_breaches"] == [account.id], report.problems
assert report.problems["journals_without_entries"] == [], report.problems
assert report.problems["entries_replay_mismatch"] == [], report.problems
rebuilt = services.ledger_rebuild()  # everything but the wallet, which is frozen
assert rebuilt.frozen == (account.id,), rebuilt
assert ledger_verify().problems["projection_mismatch"] == [account.id]
account.refresh_from_db()
assert account.status == "frozen"
assert Entry.objects.count() > 0
# Django's flush (the test runner's teardown) may empty the ledger; a raw DELETE may not (above).
call_command("flush", interactive=False, verbosity=0)
assert not Entry.objects.exists()
print("OK")
