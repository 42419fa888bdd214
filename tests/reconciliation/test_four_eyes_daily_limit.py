"""Four eyes per user and day (docs/reconciliation.md, "Four eyes"): what one user's money
resolutions of discrepancies moved without a second user's approval in a currency on one UTC day is
summed, and the one that would take that total past the currency's daily limit
(`RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS`, else 5 times the approval threshold) waits for a second
user as one above the threshold does.

Before: the threshold held per item only: one user wrote off (or adjusted, or settled, or moved out
of suspense) any number of different items each under it, alone, with no limit over the day. Real
sandbox payments and their real alpha and beta reports, on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import subprocess
import threading
import time

import pytest
from django.db import connection

from payments.models import Capture
from reconciliation.errors import DiscrepancyNeedsApprovalError
from reconciliation.models import Discrepancy, DiscrepancyApproval, SingleHandedDay
from reconciliation.services import discrepancies as discrepancy_services
from reconciliation.services import (
    discrepancy_approval_approve,
    discrepancy_request,
    discrepancy_resolve,
    discrepancy_write_off,
    reconcile_import,
)
from tests.reconciliation.sandbox_day import report
from tests.reconciliation.test_four_eyes_per_currency_and_item import _jpy_capture_missing_at_the_psp
from tests.reconciliation.test_reconcile_resolutions import alpha_day, finance, journals, ties_out

pytestmark = pytest.mark.django_db(transaction=True)

REASON = "alpha will never pay this"


@pytest.fixture
def eur(a_day_of_payments, settings):
    """Alpha's 2,500 and 730 captures missing at the PSP (two items, each under the threshold of
    1,000 once adjusted or written off as below); a daily limit of 1,200 EUR per user."""
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 1_000
    settings.RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS = {"EUR": 1_200}
    missing = alpha_day(keep=(0, 3)).discrepancies.filter(kind="missing_at_psp")
    small = missing.get(payera_amount=730)
    large = missing.get(payera_amount=2_500)
    return small, large


def _adjust(d: Discrepancy, user, amount: int = 800):
    return discrepancy_resolve(discrepancy_id=d.pk, user=user, reason="PSP fee agreed", adjustment=amount,
                               currency="EUR")  # fmt: skip


def moved_today(user, currency: str = "EUR") -> int:
    row = SingleHandedDay.objects.filter(user=user, currency=currency, day=dt.datetime.now(dt.UTC).date()).first()
    return row.moved if row else 0


def test_under_the_daily_limit_one_user_moves_alone(eur, settings):
    """730 written off and 800 adjusted: 1,530 under a daily limit of 2,000, each under the threshold."""
    settings.RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS = {"EUR": 2_000}
    small, large = eur
    fin = finance("fin1")
    assert discrepancy_write_off(discrepancy_id=small.pk, user=fin, reason=REASON).status == "written_off"
    assert _adjust(large, fin).status == "resolved"
    assert journals("recon_write_off:") == 1 and journals("recon_adjustment:") == 1
    assert moved_today(fin) == 1_530
    ties_out()


def test_crossing_the_daily_limit_needs_a_second_user(eur):
    """Before: the 800 adjustment went through alone after the 730 write-off (each under the
    threshold of 1,000). Now 730 + 800 = 1,530 passes the daily limit of 1,200: it waits for a
    second user, through the same approval as one above the threshold; approved, it does not count
    for the asker's day."""
    small, large = eur
    fin = finance("fin1")
    discrepancy_write_off(discrepancy_id=small.pk, user=fin, reason=REASON)
    with pytest.raises(DiscrepancyNeedsApprovalError, match=r"with the 730 you moved without approval today \(UTC\),"
                       r" moves 1530: above your daily limit \(1200\)") as exc:  # fmt: skip
        _adjust(large, fin)
    assert exc.value.code == "discrepancy_needs_approval" and (exc.value.amount, exc.value.currency) == (800, "EUR")
    assert journals("recon_adjustment:") == 0 and Discrepancy.objects.get(pk=large.pk).status == "open"
    approval = discrepancy_request(action="resolve", discrepancy_id=large.pk, user=fin, reason="PSP fee agreed",
                                   adjustment=800, currency="EUR")  # fmt: skip
    assert isinstance(approval, DiscrepancyApproval) and (approval.amount, approval.currency) == (800, "EUR")
    assert discrepancy_approval_approve(approval_id=approval.pk, user=finance("fin2"), note="checked").status == "done"
    assert journals("recon_adjustment:") == 1 and moved_today(fin) == 730
    ties_out()


def test_another_user_has_a_day_of_their_own(eur):
    small, large = eur
    fin1, fin2 = finance("fin1"), finance("fin2")
    discrepancy_write_off(discrepancy_id=small.pk, user=fin1, reason=REASON)
    assert _adjust(large, fin2).status == "resolved"
    assert (moved_today(fin1), moved_today(fin2)) == (730, 800)
    ties_out()


def test_the_next_utc_day_starts_from_zero(eur, monkeypatch):
    """Yesterday's 730 does not count today: today's 800 is alone under 1,200."""
    small, large = eur
    fin = finance("fin1")
    today = discrepancy_services.single_handed_day()
    monkeypatch.setattr(discrepancy_services, "single_handed_day", lambda: today - dt.timedelta(days=1))
    discrepancy_write_off(discrepancy_id=small.pk, user=fin, reason=REASON)
    monkeypatch.undo()
    assert _adjust(large, fin).status == "resolved"
    days = dict(SingleHandedDay.objects.filter(user=fin).values_list("day", "moved"))
    assert days == {today - dt.timedelta(days=1): 730, today: 800}
    ties_out()


def test_the_day_is_the_utc_day(monkeypatch):
    """23:30 in New York on 7 December is 04:30 UTC on the 8th."""
    from zoneinfo import ZoneInfo

    at = dt.datetime(2026, 12, 7, 23, 30, tzinfo=ZoneInfo("America/New_York"))
    monkeypatch.setattr(discrepancy_services.timezone, "now", lambda: at)
    assert discrepancy_services.single_handed_day() == dt.date(2026, 12, 8)


def test_currencies_are_counted_apart(day, settings):
    """A user who moved a great deal of euros alone today still writes off ¥5,000 alone under the
    yen's limit; the yen counts on its own."""
    settings.RECONCILIATION_APPROVAL_THRESHOLDS = {"JPY": 10_000}
    settings.RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS = {"EUR": 1_200, "JPY": 6_000}
    d = _jpy_capture_missing_at_the_psp(day)
    fin = finance("fin1")
    SingleHandedDay.objects.create(user=fin, currency="EUR", day=discrepancy_services.single_handed_day(),
                                   moved=1_000_000)  # fmt: skip
    assert discrepancy_write_off(discrepancy_id=d.pk, user=fin, reason=REASON).status == "written_off"
    assert (moved_today(fin, "EUR"), moved_today(fin, "JPY")) == (1_000_000, 5_000)


def test_the_default_daily_limit_is_five_times_the_threshold(settings):
    from reconciliation.services.discrepancies import DAILY_LIMIT_MULTIPLE, daily_single_handed_limit

    settings.RECONCILIATION_APPROVAL_THRESHOLD = 100_000
    settings.RECONCILIATION_APPROVAL_THRESHOLDS = {"JPY": 150_000}
    settings.RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS = {"KWD": 2_000_000}
    assert DAILY_LIMIT_MULTIPLE == 5
    assert daily_single_handed_limit("EUR") == 500_000  # 5,000.00 EUR
    assert daily_single_handed_limit("BHD") == 5_000_000  # 5,000.000 BHD (the threshold scaled)
    assert daily_single_handed_limit("jpy") == 750_000  # the currency's own threshold, five times
    assert daily_single_handed_limit("KWD") == 2_000_000  # named


def _beta_captures_missing() -> list[Discrepancy]:
    """Beta's report of the day with its refund line only: its 4,200 and 999 captures are missing."""
    lines = report("beta").decode().split("\r\n")
    header_at = next(i for i, line in enumerate(lines) if line.startswith("Batch Number;"))
    records = [i for i in range(header_at + 1, len(lines)) if lines[i]]
    assert len(records) == 3
    refund = [i for i in records if ";Refunded;" in lines[i]]
    assert len(refund) == 1, [lines[i] for i in records]
    kept = [line for i, line in enumerate(lines) if i not in records or i in refund]
    reconcile_import(psp="beta", raw="\r\n".join(kept).encode())
    return list(Discrepancy.objects.filter(psp="beta", kind="missing_at_psp").order_by("payera_amount"))


def test_two_write_offs_by_one_user_racing_do_not_both_pass(eur, settings, monkeypatch):
    """One user writes off alpha's 730 and beta's 999 at the same moment (two PSPs: no common
    reconciliation lock, two items), after an adjustment of 300 the same day: 300 + 730 + 999 =
    2,029 passes the daily limit of 2,000, though either alone does not. Real threads on PostgreSQL,
    the window held open (the limit is read slowly): one runs, the other needs a second user (the
    user's row of the day is locked; without the lock both read 300 and both pass)."""
    settings.RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS = {"EUR": 2_000}
    small, large = eur
    beta_999 = next(d for d in _beta_captures_missing() if d.payera_amount == 999)
    assert Capture.objects.get(pk=beta_999.object_id).amount == 999
    fin = finance("fin1")
    _adjust(large, fin, 300)
    assert moved_today(fin) == 300
    limit = discrepancy_services.daily_single_handed_limit

    def slow_limit(currency: str) -> int:
        time.sleep(0.5)  # between reading the user's day and adding to it
        return limit(currency)

    monkeypatch.setattr(discrepancy_services, "daily_single_handed_limit", slow_limit)
    start, answers = threading.Barrier(2), []

    def write_off(d):
        try:
            start.wait()
            discrepancy_write_off(discrepancy_id=d.pk, user=fin, reason=REASON)
            answers.append("written off")
        except DiscrepancyNeedsApprovalError:
            answers.append("needs approval")
        finally:
            connection.close()

    threads = [threading.Thread(target=write_off, args=(d,)) for d in (small, beta_999)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(answers) == ["needs approval", "written off"]
    assert journals("recon_write_off:") == 1 and moved_today(fin) in (300 + 730, 300 + 999)
    ties_out()
    ties_out("beta")


def test_the_limits_are_read_from_the_environment_and_checked():
    """`RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS=EUR=2000000,jpy=3000000`: as strict as the
    thresholds (a `*`, a code twice, an entry without `=` stop the start; an unknown code or a
    negative or non-integer amount is reconciliation.E005)."""
    from tests.reconciliation.test_approval_thresholds_env import start

    def run(value: str) -> subprocess.CompletedProcess:
        return start(value, "RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS")

    def ok(value: str) -> list[str]:
        out = run(value)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip().splitlines()[-2:]

    assert ok("EUR=2000000,jpy=3000000") == ["{'EUR': 2000000, 'JPY': 3000000}", "[]"]
    assert ok("") == ["{}", "[]"]
    for bad in ("XYZ=5", "EUR=-1", "EUR=1.5", "EUR=lots"):
        assert ok(bad)[1] == "['reconciliation.E005']", bad
    for bad in ("*=5", "EUR=1,eur=2", "EUR"):
        out = run(bad)
        assert out.returncode != 0, bad
        assert "ImproperlyConfigured" in out.stderr and "RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS" in out.stderr, bad


def test_a_line_settled_as_reported_and_a_move_out_of_suspense_count_for_the_day(a_day_of_payments, settings):
    """The other two money resolutions share the rule: an unknown line of 730 settled as reported
    into suspense, then 500 of it moved to the PSP (730 + 500 under the item's threshold of 2,000,
    past the user's daily limit of 1,200). Before: the move ran alone."""
    from reconciliation.services import discrepancy_settle_as_reported, suspense_reallocate
    from tests.reconciliation.test_reconcile_suspense import unknown

    settings.RECONCILIATION_APPROVAL_THRESHOLD = 2_000
    settings.RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS = {"EUR": 1_200}
    d = alpha_day(unknown).discrepancies.get(kind="missing_in_payera")
    fin = finance("fin1")
    discrepancy_settle_as_reported(discrepancy_id=d.pk, user=fin, reason="money arrived")
    assert moved_today(fin) == 730

    def move(user):
        return suspense_reallocate(discrepancy_id=d.pk, user=user, reason="the PSP's test money", to="psp_refund_due",
                                   amount=500, currency="EUR")  # fmt: skip

    with pytest.raises(DiscrepancyNeedsApprovalError, match=r"with the 730 .* above your daily limit \(1200\)"):
        move(fin)
    assert journals("recon_suspense:") == 0
    fin2 = finance("fin2")
    move(fin2)
    assert journals("recon_suspense:") == 1 and (moved_today(fin), moved_today(fin2)) == (730, 500)
    ties_out()
