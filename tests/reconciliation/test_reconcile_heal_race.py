"""Issue #8: the late heal (reheal.py) of a capture's "missing in Payera" line racing finance's
money-moving resolution of the same capture, and two finance users resolving one discrepancy (or
two discrepancies of one capture) at once, on real threads against PostgreSQL (each thread its own
connection, closed at its end).

The late heal settles a line whose attempt became known after its import (a lost webhook arrived,
or a status inquiry) and gives back what resolutions had cleared of its item (`lines_recover`,
`recovery_legs`). The resolutions that move money (write-off, adjustment, suspense move to the
receivable, settle as reported) take the PSP's reconciliation lock before the discrepancy row
(discrepancies.py `_locked(..., money=True)`), as the late heal's `_settle` does: the two serialize.
Either the heal sees the clearing and gives it back, or the resolution sees the line settled and
clears nothing (refused). Whatever the interleaving: the capture leaves the PSP receivable exactly
once, the account the clearing debited is given it back exactly once, the receivable check is `ok`,
the aging adds up, `ledger_verify` is clean (every journal balanced per currency).

Each race is steered into one order (no timing asserted; a steering wait gives up after
STEER_TIMEOUT and the invariants must hold all the same), each order twice per test (six captures):

- `resolution_first`: the resolution read the item and holds on inside its transaction (at its
  posting) until the heal waits on a lock (with the PSP's lock) or has looked for clearings without
  seeing it (without: the receivable is credited twice, the bug these tests catch);
- `heal_first`: the heal holds on after it looked for clearings (holding the PSP's lock) until the
  resolution waits on a lock or is done;
- `together`: both released by a barrier.

How a line becomes "missing in Payera" and is healed later: the captures are not yet succeeded in
Payera when the day's report is imported (their webhooks lost) and the PSP cannot be asked (the
import's inquiry finds nothing); then the webhooks arrive (the captures succeed) and the late heal,
asked for the line, matches it (its inquiry is left out: the PSP is not needed any more)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from ledger.models import Journal
from ledger.types import Accounts
from payments.models import Capture
from reconciliation.errors import DiscrepancyMoneyError, DiscrepancyStateError
from reconciliation.models import Discrepancy, StatementLine
from reconciliation.services import discrepancies as discrepancy_services
from reconciliation.services import (
    discrepancy_resolve,
    discrepancy_settle_as_reported,
    discrepancy_write_off,
    reconcile_import,
    reconcile_reheal,
    suspense_reallocate,
)
from reconciliation.services import reconcile as reconcile_services
from reconciliation.services import reheal as reheal_services
from reconciliation.services import suspense as suspense_services
from tests.reconciliation.helpers import asset
from tests.reconciliation.sandbox_day import pay, report
from tests.reconciliation.test_reconcile_resolution_race import (
    STEER_TIMEOUT,
    backend_pid,
    start_in_order,
    wait_until,
    waits_on_a_lock,
)
from tests.reconciliation.test_reconcile_resolutions import finance, ties_out

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL: real concurrent transactions"),
    pytest.mark.xdist_group("reconciliation_race"),
]

KIND, ATTEMPT, OPERATION_ID, CURRENCY, GROSS, NET = 0, 4, 5, 7, 8, 10  # alpha's report columns
EXTRA = (300, 450, 620)  # captures paid on top of the day's 10,000, 2,500 and 730: six races a test
ORDERS = ("resolution_first", "heal_first", "together") * 2
POST, SUSPENSE_POST, RECOVER = discrepancy_services._post, suspense_services._post, discrepancy_services.lines_recover


def receivable(currency: str = "EUR") -> int:
    return asset(Accounts.psp_receivable("alpha", currency))


def differences(currency: str = "EUR") -> int:
    return asset(Accounts.reconciliation_differences(currency))


def nothing_asked(*args, **kwargs) -> int:
    return 0  # the PSP is down (the import's inquiry), or not needed (the late heal's)


class Day:
    """Alpha's report of the day: its header, rows (columns) and trailer; a file of some of its
    rows, each passed through `edit(cols)` first."""

    def __init__(self) -> None:
        lines = report("alpha").decode().splitlines()
        self.header, self.trailer = lines[0], lines[-1]
        self.rows = [line.split(",") for line in lines[1:-1]]

    def captures(self) -> list[list[str]]:
        return sorted((r for r in self.rows if r[KIND] == "capture"), key=lambda r: -int(r[GROSS]))

    def file(self, rows, edit=None) -> bytes:
        body = []
        for cols in rows:
            cols = list(cols)
            if edit:
                edit(cols)
            body.append(",".join(cols))
        return ("\n".join([self.header, *body, self.trailer]) + "\n").encode()


def capture_of(cols) -> Capture:
    return Capture.objects.get(attempt_id=cols[ATTEMPT], status="succeeded")


def lines_missing_in_payera(monkeypatch, a_day_of_payments) -> tuple[Day, dict[int, Discrepancy]]:
    """The day's report imported while alpha's captures were unknown to Payera (webhooks lost, the
    PSP down): each capture's line missing in Payera (gross -> its discrepancy); the refund matched.
    The captures are still unknown when this returns (`webhooks_arrive`)."""
    alpha, _ = a_day_of_payments
    pay(alpha, list(EXTRA))
    day = Day()
    assert [int(r[GROSS]) for r in day.captures()] == [10_000, 2_500, 730, 620, 450, 300]
    Capture.objects.filter(attempt__connector="alpha").update(status="pending")
    with monkeypatch.context() as m:
        m.setattr(reconcile_services, "heal_inquire", nothing_asked)
        reconcile_import(psp="alpha", raw=day.file(day.rows))
    missing = {d.psp_amount: d for d in Discrepancy.objects.filter(kind="missing_in_payera")}
    assert sorted(missing) == sorted(int(r[GROSS]) for r in day.captures())
    monkeypatch.setattr(reheal_services, "heal_inquire", nothing_asked)
    return day, missing


def webhooks_arrive() -> None:
    Capture.objects.filter(attempt__connector="alpha").update(status="succeeded")


class Race:
    """One resolution against one late heal of the line that settles the same item, each in a
    thread of its own, steered into `order` through two seams: the resolution's posting
    (discrepancies._post, suspense._post) and the heal's look-up of clearings (reheal.lines_recover;
    the import's finish: reconcile.lines_recover). The heal is asked for `line_discrepancy` only
    (the back office's "re-check with the PSP"); `late_file`: the line arrives in an import of
    that file instead (the "heal" thread imports it)."""

    def __init__(
        self, monkeypatch, *, order: str, resolve, line_discrepancy: Discrepancy | None = None,
        late_file: bytes | None = None,
    ) -> None:  # fmt: skip
        self.order, self.resolve, self.line_discrepancy, self.late_file = order, resolve, line_discrepancy, late_file
        self.pids: dict[str, int] = {}
        self.errors: dict[str, BaseException] = {}
        self.results: dict[str, object] = {}
        self.resolution_posting = threading.Event()  # the resolution read the item, inside its transaction
        self.clearings_looked_up = threading.Event()  # the heal looked for clearings of its line
        self.resolution_done = threading.Event()

        def steered(post):
            def steered_post(**kwargs):
                if self.order == "resolution_first" and threading.current_thread().name == "resolution":
                    self.resolution_posting.set()
                    wait_until(lambda: self.clearings_looked_up.is_set() or waits_on_a_lock(self.pids.get("heal")))
                return post(**kwargs)

            return steered_post

        def steered_recover(**kwargs):
            found = RECOVER(**kwargs)
            self.clearings_looked_up.set()
            if self.order == "heal_first":
                wait_until(lambda: self.resolution_done.is_set() or waits_on_a_lock(self.pids.get("resolution")))
            return found

        monkeypatch.setattr(discrepancy_services, "_post", steered(POST))
        monkeypatch.setattr(suspense_services, "_post", steered(SUSPENSE_POST))
        monkeypatch.setattr(reheal_services, "lines_recover", steered_recover)
        monkeypatch.setattr(reconcile_services, "lines_recover", steered_recover)

    def _thread(self, name: str, work, barrier: threading.Barrier | None) -> threading.Thread:
        def body() -> None:
            try:
                self.pids[name] = backend_pid()
                if barrier is not None:
                    barrier.wait(timeout=STEER_TIMEOUT)
                self.results[name] = work()
            except BaseException as exc:  # noqa: BLE001 - asserted by the test
                self.errors[name] = exc
            finally:
                if name == "resolution":
                    self.resolution_done.set()
                    self.resolution_posting.set()  # (a resolution refused early: the heal still runs)
                else:
                    self.clearings_looked_up.set()  # (a heal that failed early: the resolution still runs)
                connections.close_all()

        return threading.Thread(target=body, name=name)

    def run(self) -> None:
        barrier = threading.Barrier(2) if self.order == "together" else None
        resolution = self._thread("resolution", self.resolve, barrier)
        if self.late_file is not None:
            settle = lambda: reconcile_import(psp="alpha", raw=self.late_file)  # noqa: E731
        else:
            settle = lambda: reconcile_reheal(discrepancy_ids=[self.line_discrepancy.pk])  # noqa: E731
        heal = self._thread("heal", settle, barrier)
        start_in_order(self.order, resolution, self.resolution_posting, heal, self.clearings_looked_up)

    def healed_once(self) -> StatementLine:
        """The heal (or the import) failed nothing and settled the line, once."""
        assert "heal" not in self.errors, (self.order, self.errors["heal"])
        if self.late_file is not None:
            line = StatementLine.objects.get(run_id=self.results["heal"].run_id)
        else:
            assert self.results["heal"].healed == 1, (self.order, self.results["heal"])
            line = StatementLine.objects.get(pk=self.line_discrepancy.line_id)
            assert line.healed
        assert line.outcome == "matched", (self.order, line.outcome)
        assert Journal.objects.filter(reference=line.journal_reference).count() == 1
        return line


def given_back(line: StatementLine) -> dict:
    return Journal.objects.get(reference=line.journal_reference).metadata.get("recovered", {})


@pytest.mark.parametrize("resolution", ["write_off", "adjustment"])
def test_a_late_heal_racing_a_write_off_or_adjustment_of_its_capture_credits_the_receivable_once(
    resolution, monkeypatch, a_day_of_payments
):
    """The capture is missing at the PSP in a later (empty) report of the day; finance writes it off
    (or adjusts part of it) while the late heal settles its line."""
    day, missing = lines_missing_in_payera(monkeypatch, a_day_of_payments)
    webhooks_arrive()
    reconcile_import(psp="alpha", raw=day.file([]))  # a report of the day without them: missing at PSP
    at_psp = {d.payera_amount: d for d in Discrepancy.objects.filter(kind="missing_at_psp")}
    assert sorted(at_psp) == sorted(missing)
    ties_out()
    user, owed, expense = finance(), receivable(), asset(Accounts.psp_fee_expense("EUR"))
    won: set[str] = set()
    for cols, order in zip(day.captures(), ORDERS, strict=True):
        gross, fee = int(cols[GROSS]), int(cols[GROSS]) - int(cols[NET])
        d = at_psp[gross]
        cleared = gross if resolution == "write_off" else gross // 3

        def resolve(d=d, cleared=cleared):
            if resolution == "write_off":
                return discrepancy_write_off(discrepancy_id=d.pk, user=user, reason="never paid")
            return discrepancy_resolve(discrepancy_id=d.pk, user=user, reason="alpha keeps it", adjustment=cleared)

        race = Race(monkeypatch, order=order, resolve=resolve, line_discrepancy=missing[gross])
        race.run()
        line = race.healed_once()
        won.add("heal" if "resolution" in race.errors else "resolution")
        d.refresh_from_db()
        error = race.errors.get("resolution")
        if error is not None:  # the heal came first: it resolved the "missing at PSP"; nothing moves
            assert isinstance(error, DiscrepancyStateError), (order, error)
            # (by the heal, in the name of the line's run: "settled by a later report")
            assert (d.status, d.resolved_by, d.receivable_cleared) == ("resolved", f"reconciliation:{line.run_id}", 0)
            assert given_back(line) == {}
        else:  # the resolution came first: the heal gave its clearing back, once, in full
            assert d.status == ("written_off" if resolution == "write_off" else "resolved"), order
            assert (d.receivable_cleared, d.receivable_recovered) == (cleared, cleared), order
            account = "reconciliation_differences" if resolution == "write_off" else "psp_fee_expense"
            assert given_back(line) == {f"{account}:EUR": cleared}, order
        # the capture left the receivable exactly once (by its line); the loss or fee expense nets out
        owed -= gross
        expense += fee
        assert receivable() == owed, (order, d.receivable_cleared, d.receivable_recovered)
        assert differences() == 0, order
        assert asset(Accounts.psp_fee_expense("EUR")) == expense, order
        ties_out()  # the receivable check ok, the aging adds up to it, ledger_verify clean
    assert owed == 0 and Discrepancy.objects.filter(kind="missing_at_psp", status="open").count() == 0
    assert won == {"heal", "resolution"}  # the steered orders: each side committed first at least once


def test_a_late_heal_racing_a_suspense_move_to_its_capture_credits_the_receivable_once(monkeypatch, a_day_of_payments):
    """Each capture's money also arrived on a line Payera could not tie to anything, settled as
    reported into suspense; finance moves it to the capture's receivable while the late heal
    settles the capture's own line: the money arrived twice, so one of them ends in suspense."""
    day, missing = lines_missing_in_payera(monkeypatch, a_day_of_payments)

    def unknown(cols):  # another attempt and operation, Payera knows neither
        cols[ATTEMPT], cols[OPERATION_ID] = f"att_nothere_{cols[GROSS]}", f"op_unknown_{cols[GROSS]}"

    reconcile_import(psp="alpha", raw=day.file(day.captures(), unknown))
    user = finance()
    strays = {}
    for d in Discrepancy.objects.filter(kind="missing_in_payera", reference__startswith="att_nothere_"):
        strays[d.psp_amount] = discrepancy_settle_as_reported(discrepancy_id=d.pk, user=user, reason="arrived")
    assert sorted(strays) == sorted(missing)
    webhooks_arrive()
    ties_out()
    owed, suspense = receivable(), asset(Accounts.suspense("EUR"))
    assert suspense == -sum(strays)
    won: set[str] = set()
    for cols, order in zip(day.captures(), ORDERS, strict=True):
        gross = int(cols[GROSS])
        stray, capture = strays[gross], capture_of(cols)

        def resolve(stray=stray, capture=capture):
            return suspense_reallocate(discrepancy_id=stray.pk, user=user, reason=f"it was {capture.id}",
                                       to="receivable", object_id=capture.id, move=1)  # fmt: skip

        race = Race(monkeypatch, order=order, resolve=resolve, line_discrepancy=missing[gross])
        race.run()
        line = race.healed_once()
        won.add("heal" if "resolution" in race.errors else "resolution")
        stray.refresh_from_db()
        error = race.errors.get("resolution")
        if error is not None:  # the heal came first: the capture is settled, nothing to move to
            assert isinstance(error, DiscrepancyMoneyError) and "0 EUR on the PSP receivable" in str(error), order
            assert (stray.suspense_moves or [], stray.receivable_cleared) == ([], 0)
            assert given_back(line) == {}
        else:  # the move came first: the heal gave it back to suspense (unexplained again), once
            assert len(stray.suspense_moves) == 1, order
            assert (stray.receivable_cleared, stray.receivable_recovered) == (gross, gross), order
            assert given_back(line) == {"suspense:EUR": gross}, order
        owed -= gross
        assert receivable() == owed, (order, stray.receivable_cleared, stray.receivable_recovered)
        assert asset(Accounts.suspense("EUR")) == suspense, order  # the stray money: in suspense either way
        ties_out()
    assert owed == 0
    assert won == {"heal", "resolution"}  # the steered orders: each side committed first at least once


@pytest.mark.parametrize("late", ["heal", "import"])
def test_a_late_line_racing_a_currency_mismatch_settled_as_reported_credits_the_receivable_once(
    late, monkeypatch, a_day_of_payments
):
    """The PSP also reported each capture in USD (another operation: a currency mismatch); finance
    settles that line as reported (each currency apart: the capture's whole gross leaves the EUR
    receivable) while the capture's own EUR line is settled: healed late (`heal`), or arriving in a
    later report (`import`)."""
    if late == "heal":
        day, missing = lines_missing_in_payera(monkeypatch, a_day_of_payments)
        webhooks_arrive()
    else:
        alpha, _ = a_day_of_payments
        pay(alpha, list(EXTRA))
        day, missing = Day(), {}

    def in_dollars(cols):
        cols[OPERATION_ID], cols[CURRENCY] = f"{cols[OPERATION_ID]}_usd", "USD"

    reconcile_import(psp="alpha", raw=day.file(day.captures(), in_dollars))
    mismatched = {d.payera_amount: d for d in Discrepancy.objects.filter(kind="currency_mismatch")}
    assert sorted(mismatched) == sorted(int(r[GROSS]) for r in day.captures())
    ties_out()
    user, owed, dollars = finance(), receivable(), differences("USD")
    won: set[str] = set()
    for cols, order in zip(day.captures(), ORDERS, strict=True):
        gross = int(cols[GROSS])
        d = mismatched[gross]

        def resolve(d=d):
            return discrepancy_settle_as_reported(discrepancy_id=d.pk, user=user, reason="alpha converted it")

        if late == "heal":
            race = Race(monkeypatch, order=order, resolve=resolve, line_discrepancy=missing[gross])
        else:
            race = Race(monkeypatch, order=order, resolve=resolve, late_file=day.file([cols]))
        race.run()
        line = race.healed_once()
        won.add("heal" if "resolution" in race.errors else "resolution")
        d.refresh_from_db()
        error = race.errors.get("resolution")
        if error is not None:  # the line came first: the capture is settled, the USD line is not booked
            assert isinstance(error, DiscrepancyMoneyError) and "no longer on the PSP receivable" in str(error), order
            assert (d.status, d.receivable_cleared) == ("open", 0)
            assert given_back(line) == {}
        else:  # settled as reported first: the line gave the capture's gross back to differences, once
            assert d.status == "resolved", order
            assert (d.receivable_cleared, d.receivable_recovered) == (gross, gross), order
            assert given_back(line) == {"reconciliation_differences:EUR": gross}, order
            dollars -= gross  # the USD line's money: Cr differences in USD (the PSP paid twice)
        owed -= gross
        assert receivable() == owed, (order, d.receivable_cleared, d.receivable_recovered)
        assert differences() == 0 and differences("USD") == dollars, order
        ties_out()
    assert owed == (0 if late == "heal" else -1_000)  # (the 1,000 refund's line is in no report of `import`)
    assert won == {"heal", "resolution"}  # the steered orders: each side committed first at least once


class Clash:
    """Two finance users acting on one discrepancy at once: each in a thread of its own; the first
    (`a`) holds on at its posting, inside its transaction, until `b` waits on a lock or is done
    (no lock: both read the discrepancy open); `together`: released by a barrier."""

    def __init__(self, monkeypatch, a, b, *, together: bool) -> None:
        self.work, self.together = {"a": a, "b": b}, together
        self.pids: dict[str, int] = {}
        self.errors: dict[str, BaseException] = {}
        self.posting, self.b_done = threading.Event(), threading.Event()

        def steered(post):
            def steered_post(**kwargs):
                if not self.together and threading.current_thread().name == "a":
                    self.posting.set()
                    wait_until(lambda: self.b_done.is_set() or waits_on_a_lock(self.pids.get("b")))
                return post(**kwargs)

            return steered_post

        monkeypatch.setattr(discrepancy_services, "_post", steered(POST))
        monkeypatch.setattr(suspense_services, "_post", steered(SUSPENSE_POST))

    def run(self) -> dict[str, BaseException]:
        barrier = threading.Barrier(2) if self.together else None

        def body(name: str) -> None:
            try:
                self.pids[name] = backend_pid()
                if barrier is not None:
                    barrier.wait(timeout=STEER_TIMEOUT)
                self.work[name]()
            except BaseException as exc:  # noqa: BLE001 - asserted by the test
                self.errors[name] = exc
            finally:
                if name == "a":
                    self.posting.set()
                else:
                    self.b_done.set()
                connections.close_all()

        a, b = (threading.Thread(target=body, args=(n,), name=n) for n in ("a", "b"))
        a.start()
        if not self.together:
            self.posting.wait(timeout=STEER_TIMEOUT)
        b.start()
        for t in (a, b):
            t.join(timeout=120)
        assert not a.is_alive() and not b.is_alive(), "a thread did not finish (a lock never released?)"
        return self.errors


@pytest.mark.parametrize("pair", ["two_write_offs", "write_off_and_adjustment"])
def test_two_finance_users_resolving_one_discrepancy_at_once_move_its_money_once(pair, monkeypatch, a_day_of_payments):
    alpha, _ = a_day_of_payments
    pay(alpha, list(EXTRA))
    day = Day()
    reconcile_import(psp="alpha", raw=day.file([]))  # every capture (and the refund) missing at the PSP
    at_psp = {d.payera_amount: d for d in Discrepancy.objects.filter(kind="missing_at_psp", payera_amount__gt=0)}
    assert sorted(at_psp) == sorted(int(r[GROSS]) for r in day.captures())
    ties_out()
    one, two = finance("fin1"), finance("fin2")
    owed, lost, expense = receivable(), differences(), asset(Accounts.psp_fee_expense("EUR"))
    for i, gross in enumerate(sorted(at_psp)):
        d = at_psp[gross]
        write_off = lambda d=d, user=one: discrepancy_write_off(discrepancy_id=d.pk, user=user, reason="never")  # noqa: E731
        if pair == "two_write_offs":
            other = lambda d=d: discrepancy_write_off(discrepancy_id=d.pk, user=two, reason="never paid")  # noqa: E731
        else:
            other = lambda d=d, g=gross: discrepancy_resolve(  # noqa: E731
                discrepancy_id=d.pk, user=two, reason="alpha keeps it", adjustment=g // 2
            )
        a, b = (write_off, other) if i % 2 else (other, write_off)
        errors = Clash(monkeypatch, a, b, together=i >= 4).run()
        # exactly one of them acted; the other found the discrepancy closed and moved nothing
        assert len(errors) == 1 and isinstance(next(iter(errors.values())), DiscrepancyStateError), (i, errors)
        d.refresh_from_db()
        journals = Journal.objects.filter(reference__in=[f"recon_write_off:{d.pk}", f"recon_adjustment:{d.pk}"])
        assert journals.count() == 1, i
        owed -= d.receivable_cleared
        if d.status == "written_off":
            assert d.receivable_cleared == gross
            lost += gross
        else:
            assert (d.status, d.receivable_cleared) == ("resolved", gross // 2)
            expense += gross // 2
        assert (receivable(), differences(), asset(Accounts.psp_fee_expense("EUR"))) == (owed, lost, expense), i
        ties_out()


def test_two_finance_users_writing_off_two_discrepancies_of_one_capture_at_once_clear_it_once(
    monkeypatch, a_day_of_payments
):
    """Two discrepancies name each capture: "missing at PSP" (an earlier report without it) and an
    amount mismatch (a later line of another operation, 1.00 more). Two users write one off each, at
    once: only the PSP's lock orders them (two rows); the second finds nothing left to clear."""
    alpha, _ = a_day_of_payments
    pay(alpha, list(EXTRA))
    day = Day()
    reconcile_import(psp="alpha", raw=day.file([]))

    def mismatched(cols):
        cols[OPERATION_ID] = f"{cols[OPERATION_ID]}_first"
        cols[GROSS], cols[NET] = str(int(cols[GROSS]) + 100), str(int(cols[NET]) + 100)

    reconcile_import(psp="alpha", raw=day.file(day.captures(), mismatched))
    pairs = {
        d.payera_amount: (d, Discrepancy.objects.get(kind="amount_mismatch", object_id=d.object_id))
        for d in Discrepancy.objects.filter(kind="missing_at_psp", payera_amount__gt=0)
    }
    assert sorted(pairs) == sorted(int(r[GROSS]) for r in day.captures())
    ties_out()
    one, two = finance("fin1"), finance("fin2")
    owed, lost = receivable(), differences()
    for i, gross in enumerate(sorted(pairs)):
        at_psp, mismatch = pairs[gross]
        first = lambda d=at_psp: discrepancy_write_off(discrepancy_id=d.pk, user=one, reason="never paid")  # noqa: E731
        second = lambda d=mismatch: discrepancy_write_off(discrepancy_id=d.pk, user=two, reason="never")  # noqa: E731
        a, b = (first, second) if i % 2 else (second, first)
        errors = Clash(monkeypatch, a, b, together=i >= 4).run()
        assert not errors, (i, errors)
        both = [Discrepancy.objects.get(pk=d.pk) for d in pairs[gross]]
        assert [d.status for d in both] == ["written_off", "written_off"], i
        assert sorted(d.receivable_cleared for d in both) == [0, gross], i  # cleared once, by whoever came first
        refs = [f"recon_write_off:{d.pk}" for d in both]
        assert Journal.objects.filter(reference__in=refs).count() == 1, i
        owed, lost = owed - gross, lost + gross
        assert (receivable(), differences()) == (owed, lost), i
        ties_out()


def test_two_suspense_moves_of_one_discrepancy_at_once_move_its_money_once(monkeypatch, a_day_of_payments):
    """The admin's form (move=n) and a caller without it (the next n), at once: one move, one journal;
    the other finds it made already (a retry: nothing moves) or nothing left in suspense."""
    alpha, _ = a_day_of_payments
    pay(alpha, list(EXTRA))
    day = Day()

    def unknown(cols):
        cols[ATTEMPT], cols[OPERATION_ID] = f"att_nothere_{cols[GROSS]}", f"op_unknown_{cols[GROSS]}"

    reconcile_import(psp="alpha", raw=day.file(day.captures(), unknown))
    one, two = finance("fin1"), finance("fin2")
    strays = [
        discrepancy_settle_as_reported(discrepancy_id=d.pk, user=one, reason="arrived")
        for d in Discrepancy.objects.filter(kind="missing_in_payera").order_by("pk")
    ]
    assert len(strays) == 6
    suspense, payable = asset(Accounts.suspense("EUR")), asset(Accounts.psp_payable("alpha", "EUR"))
    ties_out()
    for i, stray in enumerate(strays):
        form = lambda s=stray: suspense_reallocate(discrepancy_id=s.pk, user=one, reason="alpha's test money",  # noqa: E731
                                                  to="psp_refund_due", move=1)  # fmt: skip
        bare = lambda s=stray: suspense_reallocate(discrepancy_id=s.pk, user=two, reason="paid by mistake",  # noqa: E731
                                                  to="psp_refund_due")  # fmt: skip
        a, b = (form, bare) if i % 2 else (bare, form)
        errors = Clash(monkeypatch, a, b, together=i >= 4).run()
        assert all(isinstance(e, DiscrepancyMoneyError) for e in errors.values()) and len(errors) <= 1, (i, errors)
        stray.refresh_from_db()
        gross = stray.psp_amount
        assert [m["move"] for m in stray.suspense_moves] == [1], i
        [journal] = Journal.objects.filter(reference__startswith=f"recon_suspense:{stray.pk}:")
        # the move on record is the one that moved the money (not another user's save over it)
        assert stray.suspense_moves[0]["by"] == journal.metadata["by"], (i, stray.suspense_moves, journal.metadata)
        suspense, payable = suspense + gross, payable - gross
        assert (asset(Accounts.suspense("EUR")), asset(Accounts.psp_payable("alpha", "EUR"))) == (
            suspense,
            payable,
        ), i
        ties_out()
    assert suspense == 0
