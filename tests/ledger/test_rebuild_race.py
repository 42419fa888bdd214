"""Review 14c: `ledger_rebuild` run while postings happen (real threads, real PostgreSQL).

docs/ledger.md ("Operations"): `manage.py ledger_rebuild` "recompute[s] every projection from
entries under lock". ledger/services/maintenance.py locks the accounts with one
`SELECT ... FOR UPDATE` (the rows its snapshot sees), runs the limit check, then one
`UPDATE ledger_account SET balance = (SELECT sum(...) FROM ledger_entry ...)` over *every* account.
An account created after the lock statement is not locked by the rebuild, so postings to it go on;
when the UPDATE meets such an account while a posting holds its row, it waits, and once the posting
commits PostgreSQL re-evaluates the row (EvalPlanQual) with the sums of the UPDATE's own snapshot,
taken before that posting committed: the rebuild writes a balance without the posting's entries
over the projection the posting had just written. The projection is then wrong (a lost update): the
balance a merchant sees, and the limit CHECKs that hold on it, no longer match the entries.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from ledger import selectors, services
from ledger.models import Account
from ledger.types import AccountKey, AccountType, transfer_lines
from ledger.verify import ledger_verify
from tests.ledger.conftest import make_account

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks under real concurrency: PostgreSQL"),
]


def _backend_waits_for_a_lock(pid: int, query_start: str, timeout: float = 30.0) -> None:
    """Until backend `pid` waits for a lock in a statement starting with `query_start`."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT wait_event_type, query FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
            if row and row[0] == "Lock" and row[1].lstrip().upper().startswith(query_start):
                return
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited for a lock in {query_start}...")


def _backend_waits_for(pid: int, blocker: int, timeout: float = 30.0) -> None:
    """Until backend `pid` waits for a lock that backend `blocker` holds."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT %s = ANY (pg_blocking_pids(%s))", [blocker, pid])
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited for backend {blocker}")


def test_rebuild_does_not_overwrite_a_posting_that_commits_while_it_runs():
    """A posting that commits while `ledger_rebuild` runs must keep its projection.

    What happens: the rebuild's lock statement waits behind an open transaction (any posting's);
    meanwhile accounts A and B are created and J1 posts 100 from A to B; then a posting J2 (50, A to
    B) holds A and B in its transaction. The rebuild's lock goes on without A and B (created after
    its snapshot), its UPDATE reaches A, waits for J2, and after J2 commits writes A's balance as of
    its snapshot: 100 instead of 150.
    Expected: A's projection equals its entries (150), `ledger_verify` finds nothing. Suspected code:
    ledger/services/maintenance.py `ledger_rebuild` (accounts created after its lock statement are
    rebuilt without being locked, from a snapshot older than their row)."""
    tag = uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    x = make_account("mer_x" + tag, "x")  # exists before the rebuild: its lock waits for this one
    errors: list[BaseException] = []
    x_held, x_release = threading.Event(), threading.Event()
    j2_held, j2_release = threading.Event(), threading.Event()
    rebuild_pid: list[int] = []
    reports: list = []

    def hold_x() -> None:
        try:
            with transaction.atomic():
                list(Account.objects.select_for_update().filter(owner=x.owner, code=x.code))
                x_held.set()
                assert x_release.wait(60)
        except BaseException as exc:  # noqa: BLE001 (surfaced to the test)
            errors.append(exc)
        finally:
            connection.close()

    def rebuild() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                rebuild_pid.append(cursor.fetchone()[0])
            reports.append(services.ledger_rebuild())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    a = AccountKey("mer_a" + tag, "wallet", "EUR")
    b = AccountKey("mer_b" + tag, "wallet", "EUR")

    j2_pid: list[int] = []

    def post_j2() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                j2_pid.append(cursor.fetchone()[0])
            with transaction.atomic():
                services.journal_post(
                    reference=f"j2:{tag}", lines=transfer_lines(debit=a, credit=b, amount=50), occurred_at=now
                )
                j2_held.set()
                assert j2_release.wait(60)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_x)
    holder.start()
    assert x_held.wait(30)
    rebuilder = threading.Thread(target=rebuild)
    rebuilder.start()
    deadline = time.monotonic() + 30
    while not rebuild_pid and time.monotonic() < deadline:
        time.sleep(0.01)
    _backend_waits_for_a_lock(rebuild_pid[0], "SELECT")  # the rebuild's lock statement waits for X
    # accounts created (and posted to) after the rebuild's lock statement began
    make_account(a.owner, a.code, type=AccountType.ASSET)
    make_account(b.owner, b.code, type=AccountType.ASSET)
    services.journal_post(reference=f"j1:{tag}", lines=transfer_lines(debit=a, credit=b, amount=100), occurred_at=now)
    poster = threading.Thread(target=post_j2)
    poster.start()
    assert j2_held.wait(30)
    x_release.set()  # the rebuild locks the rest, checks limits, then meets A (held by J2)
    # (fix14e) before the fix the rebuild waited for A in its UPDATE; it now waits in the lock of its
    # second round (a SELECT ... FOR UPDATE of the accounts created since its first): either way it
    # waits for J2's backend, which is what this step waits for
    _backend_waits_for(rebuild_pid[0], j2_pid[0])
    j2_release.set()
    for thread in (holder, rebuilder, poster):
        thread.join(60)
    assert errors == []
    assert reports and reports[0].ok

    report = ledger_verify(limit=None, checks=("projection_mismatch",))
    assert selectors.account_balance(key=a).posted == 150, "the rebuild overwrote J2's projection of A"
    assert report.problems["projection_mismatch"] == [], report.problems
