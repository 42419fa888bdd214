"""`ledger_rebuild` takes its row locks in the writers' order (real threads, real PostgreSQL).

What was wrong: the rebuild locked every account row in id order. The posting functions lock the
shards of hot accounts first (key order), then the other accounts in id order. A hot account
created after a merchant's account (a new connector's PSP receivable, a new currency) has shards
with higher ids than that account: a posting holding such a shard and waiting for the merchant's
account, and the rebuild holding the merchant's account and reaching the shard, wait for each
other. PostgreSQL breaks the deadlock by failing one of them: the rebuild, or the posting -- inside
the caller's transaction (a capture's) the deadlock error reaches the caller, which the issue
forbids ("no deadlock errors surfaced"). Now the rebuild locks hot parents, then shards in the
writers' key order, then every other account in id order: the writers' own order."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from ledger import selectors, services
from ledger.models import Account
from ledger.types import AccountKey, AccountType, PostingLine
from ledger.verify import ledger_verify
from tests.ledger.conftest import make_account
from tests.ledger.test_rebuild_race import _backend_waits_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks under real concurrency: PostgreSQL"),
]


def _pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _rebuild_beside(middle, write) -> list:
    """Runs a rebuild while another transaction holds `middle` (the rebuild's lock waits there),
    then `write` in a third thread once the rebuild waits, and checks `write` waits for the rebuild;
    then lets `middle` go. Answers the rebuild's reports; every thread's error fails the test."""
    errors: list[BaseException] = []
    pids: dict[str, int] = {}
    held, release = threading.Event(), threading.Event()
    reports: list = []

    def guarded(name, body):
        def run() -> None:
            try:
                pids[name] = _pid()
                body()
            except BaseException as exc:  # noqa: BLE001 (surfaced to the test)
                errors.append(exc)
            finally:
                connection.close()

        return threading.Thread(target=run)

    def hold_middle() -> None:
        with transaction.atomic():
            list(Account.objects.select_for_update().filter(owner=middle.owner))
            held.set()
            assert release.wait(60)

    holder = guarded("holder", hold_middle)
    holder.start()
    assert held.wait(30)
    rebuilder = guarded("rebuild", lambda: reports.append(services.ledger_rebuild()))
    rebuilder.start()
    while "rebuild" not in pids:
        threading.Event().wait(0.01)
    _backend_waits_for(pids["rebuild"], pids["holder"])  # the rebuild's lock waits at `middle`
    poster = guarded("poster", write)
    poster.start()
    while "poster" not in pids:
        threading.Event().wait(0.01)
    _backend_waits_for(pids["poster"], pids["rebuild"])  # the write waits for the rebuild
    release.set()
    for thread in (holder, rebuilder, poster):
        thread.join(60)
    assert errors == [], errors
    return reports


def test_a_rebuild_and_a_posting_to_a_young_hot_account_do_not_deadlock():
    tag = uuid.uuid4().hex[:10]
    wallet = make_account("mer_w" + tag, "wallet", type=AccountType.LIABILITY)  # lowest id
    middle = make_account("mer_m" + tag, "middle")  # held by a third transaction: the rebuild stops here
    hot = AccountKey("platform", "young_hot:" + tag, "EUR")
    services.account_get_or_create(key=hot, type=AccountType.ASSET, hot=True)  # shards: the highest ids
    assert (
        Account.objects.filter(parent__code=hot.code).order_by("id").first().id
        > Account.objects.get(owner=middle.owner).id
    )

    def post() -> None:
        with transaction.atomic():  # a caller's transaction: a deadlock error would reach it
            services.journal_post(
                reference=f"capture:{tag}",
                lines=(PostingLine(hot, 100), PostingLine(wallet, -100)),
                occurred_at=datetime.now(UTC),
            )

    reports = _rebuild_beside(middle, post)
    assert reports and reports[0].ok
    assert ledger_verify().ok


def test_a_hot_account_created_while_the_rebuild_runs_does_not_deadlock_it_with_a_posting():
    """A hot account created after the rebuild listed its accounts (session 18, h18e).

    What was wrong: the rebuild locks in rounds, each in the writers' order, but a later round comes
    after the earlier ones' rows: an account created after the first round's lock statement (a new
    connector's PSP receivable) is locked after every account of the first round. A posting from that
    new hot account to an older merchant account takes a shard first, then waits for the merchant
    account, which the rebuild holds; the rebuild's next round waits for the shard: a deadlock.
    PostgreSQL fails one of them after deadlock_timeout: the rebuild (the operator sees a raw
    "deadlock detected") or the posting, inside the caller's transaction (a capture fails with a
    deadlock error). Expected: the rebuild keeps out every posting and account creation while it
    runs (a table lock), so nobody waits on anybody in a cycle; both finish, the ledger verifies."""
    tag = uuid.uuid4().hex[:10]
    wallet = make_account("mer_w" + tag, "wallet", type=AccountType.LIABILITY)  # locked by the first round
    middle = make_account("mer_m" + tag, "middle")  # held by a third transaction: the rebuild stops here
    hot = AccountKey("platform", "late_hot:" + tag, "EUR")

    def create_and_post() -> None:
        # created (and committed) while the rebuild waits: after its accounts were listed (the
        # posting waits for the rebuild: for `wallet` on main; with the fix for the whole table,
        # where the account creation itself waits)
        services.account_get_or_create(key=hot, type=AccountType.ASSET, hot=True)
        with transaction.atomic():  # a caller's transaction: a deadlock error would reach it
            services.journal_post(
                reference=f"capture:{tag}",
                lines=(PostingLine(hot, 100), PostingLine(wallet, -100)),
                occurred_at=datetime.now(UTC),
            )

    reports = _rebuild_beside(middle, create_and_post)
    assert reports and reports[0].ok
    assert selectors.account_balance(key=hot).posted == 100
    assert ledger_verify().ok
