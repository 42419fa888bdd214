"""Issue #8: finance's write-off of a capture's discrepancy racing the import of a report line that
settles the same capture, on real threads against PostgreSQL (each thread its own connection).

The write-off takes the PSP's reconciliation lock before the discrepancy (discrepancies.py
`_locked(..., money=True)`), as the import's finish does (reconcile.py `_finish`): the two serialize,
so either the settlement sees the clearing and gives it back (`lines_recover`), or the write-off sees
the line settled and clears nothing. Whatever the order, the capture leaves the PSP receivable
exactly once, the loss nets to zero (the line did settle the capture), the receivable check is `ok`
and `ledger_verify` is clean, and no deadlock (or any other database error) surfaces.

Each capture is raced in one order, steered (no timing is asserted; a steering wait gives up after
STEER_TIMEOUT and the invariants must hold all the same):

- `write_off_first`: the write-off reads the item (nothing settles it yet) and holds on inside its
  transaction until the import either waits on a lock (the PSP's lock: the write-off commits first
  and the finish sees its clearing) or has looked for clearings without seeing it (no lock: the
  receivable is credited twice, the bug this test catches);
- `import_first`: the import's finish holds on after it looked for clearings (holding the PSP's
  lock) until the write-off waits on a lock or is done;
- `together`: both released by a barrier, no steering.

Two kinds of discrepancy name the capture: an amount mismatch (an earlier line of another operation
id: only the PSP's lock orders the write-off and the settlement) and the issue's "missing at PSP"
(the import's finish also resolves it, under its row lock: the write-off may then find it resolved,
DiscrepancyStateError, and moves nothing)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections

from ledger.types import Accounts
from reconciliation.errors import DiscrepancyStateError
from reconciliation.models import Discrepancy, ReconRunStatus
from reconciliation.services import discrepancies as discrepancy_services
from reconciliation.services import discrepancy_write_off, reconcile_import
from reconciliation.services import reconcile as reconcile_services
from tests.reconciliation.helpers import asset
from tests.reconciliation.sandbox_day import report
from tests.reconciliation.test_reconcile_resolutions import GROSS, NET, finance, ties_out

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL: real concurrent transactions"),
    pytest.mark.xdist_group("reconciliation_race"),  # the thread races on one worker (test_reconcile_heal_race.py)
]

OPERATION_ID = 5  # alpha's report columns
CAPTURES = (0, 1, 2)  # alpha's rows of the day: the 10,000, 2,500 and 730 captures (row 3: a 1,000 refund)
ORDERS = ("write_off_first", "import_first", "together")
STEER_TIMEOUT = 30.0  # a steering wait gives up after this (never asserted: the invariants hold anyway)
POST, LINES_RECOVER = discrepancy_services._post, reconcile_services.lines_recover  # the seams, unsteered


def receivable() -> int:
    return asset(Accounts.psp_receivable("alpha", "EUR"))


def differences() -> int:
    return asset(Accounts.reconciliation_differences("EUR"))


def alpha_file(rows: list[str], edit=None) -> bytes:
    """Alpha's report of the day with only `rows` (their indexes in the body), each row's columns
    passed through `edit(i, cols)` first."""
    lines = report("alpha").decode().splitlines()
    body = lines[1:-1]
    kept = []
    for i in rows:
        cols = body[i].split(",")
        if edit:
            edit(i, cols)
        kept.append(",".join(cols))
    return ("\n".join([lines[0], *kept, lines[-1]]) + "\n").encode()


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def waits_on_a_lock(pid: int | None) -> bool:
    """Whether backend `pid` waits on a lock right now (an advisory or a row lock)."""
    if pid is None:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # pg_stat_activity is cached per transaction
        cursor.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row and row[0])


def wait_until(condition) -> None:
    deadline = time.monotonic() + STEER_TIMEOUT
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def start_in_order(order: str, a: threading.Thread, a_ready: threading.Event, b: threading.Thread,
                   b_ready: threading.Event) -> None:  # fmt: skip
    """Start two steered threads: `a` first until it is `a_ready` when `order` names it (`<a>_first`),
    `b` first likewise, else both at once (a barrier in them); join both, which must finish."""
    if order == f"{a.name}_first":
        a.start()
        a_ready.wait(timeout=STEER_TIMEOUT)
        b.start()
    elif order == f"{b.name}_first":
        b.start()
        b_ready.wait(timeout=STEER_TIMEOUT)
        a.start()
    else:
        a.start()
        b.start()
    for t in (a, b):
        t.join(timeout=120)
    assert not a.is_alive() and not b.is_alive(), "a thread did not finish (a lock never released?)"


class Race:
    """One write-off against one import, in threads of their own, steered into `order` through two
    seams: the write-off's posting (discrepancies._post) and the finish's look-up of clearings
    (reconcile.lines_recover)."""

    def __init__(self, monkeypatch, *, order: str, discrepancy_id: int, raw: bytes, user) -> None:
        self.order, self.discrepancy_id, self.raw, self.user = order, discrepancy_id, raw, user
        self.pids: dict[str, int] = {}
        self.errors: dict[str, BaseException] = {}
        self.write_off_reading = threading.Event()  # the write-off read the item, inside its transaction
        self.clearings_looked_up = threading.Event()  # the finish looked for clearings of its lines
        self.write_off_done = threading.Event()

        def steered_post(**kwargs):
            if self.order == "write_off_first" and threading.current_thread().name == "write_off":
                self.write_off_reading.set()
                wait_until(lambda: self.clearings_looked_up.is_set() or waits_on_a_lock(self.pids.get("import")))
            return POST(**kwargs)

        def steered_recover(**kwargs):
            found = LINES_RECOVER(**kwargs)
            self.clearings_looked_up.set()
            if self.order == "import_first":
                wait_until(lambda: self.write_off_done.is_set() or waits_on_a_lock(self.pids.get("write_off")))
            return found

        monkeypatch.setattr(discrepancy_services, "_post", steered_post)
        monkeypatch.setattr(reconcile_services, "lines_recover", steered_recover)

    def _thread(self, name: str, work, barrier: threading.Barrier | None) -> threading.Thread:
        def body() -> None:
            try:
                self.pids[name] = backend_pid()
                if barrier is not None:
                    barrier.wait(timeout=STEER_TIMEOUT)
                work()
            except BaseException as exc:  # noqa: BLE001 - asserted by the test
                self.errors[name] = exc
            finally:
                if name == "write_off":
                    self.write_off_done.set()
                    self.write_off_reading.set()  # (a write-off that failed early: the import still runs)
                connections.close_all()

        return threading.Thread(target=body, name=name)

    def run(self) -> None:
        barrier = threading.Barrier(2) if self.order == "together" else None
        write_off = self._thread(
            "write_off",
            lambda: discrepancy_write_off(discrepancy_id=self.discrepancy_id, user=self.user, reason="never paid"),
            barrier,
        )
        imp = self._thread("import", lambda: reconcile_import(psp="alpha", raw=self.raw), barrier)
        start_in_order(self.order, write_off, self.write_off_reading, imp, self.clearings_looked_up)


@pytest.mark.parametrize("kind", ["amount_mismatch", "missing_at_psp"])
def test_a_write_off_racing_the_import_that_settles_its_capture_credits_the_receivable_once(
    kind, monkeypatch, a_day_of_payments
):
    def mismatched(i, cols):  # another operation id (another line), 1.00 more: an amount mismatch
        if i in CAPTURES:
            cols[OPERATION_ID] = f"{cols[OPERATION_ID]}_first"
            cols[GROSS], cols[NET] = str(int(cols[GROSS]) + 100), str(int(cols[NET]) + 100)

    # the day's report: the captures mismatched, or left out (missing at the PSP); the refund settles
    first = alpha_file([0, 1, 2, 3], mismatched) if kind == "amount_mismatch" else alpha_file([3])
    reconcile_import(psp="alpha", raw=first)
    waiting = {d.payera_amount: d for d in Discrepancy.objects.filter(kind=kind)}
    assert sorted(waiting) == [730, 2_500, 10_000]
    ties_out()
    owed = receivable()
    assert owed == 10_000 + 2_500 + 730 and differences() == 0
    user = finance()
    lines = report("alpha").decode().splitlines()[1:-1]
    for row, order in zip(CAPTURES, ORDERS, strict=True):
        gross = int(lines[row].split(",")[GROSS])
        d = waiting[gross]
        race = Race(monkeypatch, order=order, discrepancy_id=d.pk, raw=alpha_file([row]), user=user)
        race.run()
        d.refresh_from_db()
        # no deadlock, no database error; a "missing at PSP" the import resolved first refuses the write-off
        import_error = race.errors.get("import")
        assert import_error is None, (order, import_error)
        write_off_error = race.errors.get("write_off")
        if write_off_error is not None:
            assert kind == "missing_at_psp" and isinstance(write_off_error, DiscrepancyStateError), (
                order,
                write_off_error,
            )
            assert d.status == "resolved" and d.receivable_cleared == 0
        else:
            assert d.status == "written_off"
        # the capture left the receivable exactly once: by the line, the write-off's clearing given back
        owed -= gross
        assert receivable() == owed, (order, kind, d.receivable_cleared, d.receivable_recovered)
        assert differences() == 0, (order, kind, d.receivable_cleared, d.receivable_recovered)
        assert d.receivable_cleared in (0, gross) and d.receivable_recovered == d.receivable_cleared, order
        ties_out()  # the receivable check ok, the aging adds up to it, ledger_verify clean
    assert owed == 0


@pytest.mark.parametrize("then", ["fails", "finishes"])
def test_a_write_off_while_an_import_is_posting_clears_the_item(then, monkeypatch, a_day_of_payments):
    """A line of an import that has not finished is not settled yet (its journal is posted, and its
    run marked done, by the finish): a write-off between the match and the finish clears the item.
    Should the finish then fail, its lines are removed and the write-off stands (not a written-off
    discrepancy whose item stays on the receivable); should it finish, it gives the clearing back."""
    reconcile_import(psp="alpha", raw=alpha_file([0, 1, 3]))  # the 730 capture is missing at the PSP
    d = Discrepancy.objects.get(kind="missing_at_psp")
    user = finance()
    owed = receivable()
    phase = reconcile_services._phase

    def write_off_while_posting(run, status, progress):
        phase(run, status, progress)
        if status == ReconRunStatus.POSTING:
            discrepancy_write_off(discrepancy_id=d.pk, user=user, reason="never paid")
            if then == "fails":
                raise RuntimeError("the import fails before its finish")

    monkeypatch.setattr(reconcile_services, "_phase", write_off_while_posting)
    if then == "fails":
        with pytest.raises(RuntimeError, match="before its finish"):
            reconcile_import(psp="alpha", raw=alpha_file([2]))
    else:
        reconcile_import(psp="alpha", raw=alpha_file([2]))
    d.refresh_from_db()
    recovered = 730 if then == "finishes" else 0
    assert (d.status, d.receivable_cleared, d.receivable_recovered) == ("written_off", 730, recovered)
    assert (receivable(), differences()) == (owed - 730, 730 - recovered)
    ties_out()


def test_suspense_moved_to_a_capture_while_an_import_is_posting_its_line(monkeypatch, a_day_of_payments):
    """The same for a suspense move to the receivable of a capture whose line an unfinished import
    names: the move is made (not refused as "0 on the PSP receivable"), and stands when the import
    then fails."""
    from payments.models import Capture
    from reconciliation.services import suspense_reallocate
    from tests.reconciliation.test_reconcile_suspense import in_suspense

    d = in_suspense()  # 730 EUR in suspense; the 730 capture missing at the PSP
    capture = Capture.objects.get(amount=730)
    user = finance()
    phase = reconcile_services._phase

    def move_while_posting(run, status, progress):
        phase(run, status, progress)
        if status == ReconRunStatus.POSTING:
            suspense_reallocate(discrepancy_id=d.pk, user=user, reason="it was cap 730", to="receivable",
                                object_id=capture.id, move=1)  # fmt: skip
            raise RuntimeError("the import fails before its finish")

    monkeypatch.setattr(reconcile_services, "_phase", move_while_posting)
    with pytest.raises(RuntimeError, match="before its finish"):
        reconcile_import(psp="alpha", raw=alpha_file([2]))
    d.refresh_from_db()
    assert (d.object_id, d.receivable_cleared, d.receivable_recovered) == (capture.id, 730, 0)
    assert asset(Accounts.suspense("EUR")) == 0 and receivable() == 0
    ties_out()
