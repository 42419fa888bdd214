"""The pure rules of recurring charges: periods from the anchor and the dunning policy."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from payments.recurring import add_months, decline_retryable, next_retry_at, period_start

UTC = dt.UTC


def test_monthly_periods_clamp_the_day_without_drifting():
    anchor = dt.datetime(2027, 1, 31, 9, 30, tzinfo=UTC)
    starts = [period_start(anchor, "month", 1, n) for n in range(4)]
    assert [s.date() for s in starts] == [dt.date(2027, 1, 31), dt.date(2027, 2, 28), dt.date(2027, 3, 31),
                                          dt.date(2027, 4, 30)]
    assert period_start(anchor, "year", 1, 1).date() == dt.date(2028, 1, 31)
    assert period_start(dt.datetime(2028, 2, 29, tzinfo=UTC), "year", 1, 1).date() == dt.date(2029, 2, 28)


def test_day_and_week_periods_with_a_count():
    anchor = dt.datetime(2027, 1, 1, tzinfo=UTC)
    assert period_start(anchor, "day", 3, 2) == anchor + dt.timedelta(days=6)
    assert period_start(anchor, "week", 2, 1) == anchor + dt.timedelta(weeks=2)


@given(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 1, 1)),
       st.integers(min_value=0, max_value=240))
def test_add_months_moves_exactly_that_many_months(start, months):
    moved = add_months(start, months)
    assert (moved.year * 12 + moved.month) - (start.year * 12 + start.month) == months
    assert moved.day <= start.day and moved.time() == start.time()


def test_retries_on_the_schedule_then_none():
    t0 = dt.datetime(2027, 1, 1, tzinfo=UTC)
    days = [1, 3, 5, 7]
    assert [next_retry_at(dunning_started_at=t0, failures=n, schedule_days=days) for n in (1, 2, 3, 4, 5)] == [
        t0 + dt.timedelta(days=1), t0 + dt.timedelta(days=3), t0 + dt.timedelta(days=5), t0 + dt.timedelta(days=7),
        None]


def test_soft_declines_are_retried_hard_ones_stop():
    assert decline_retryable("insufficient_funds", "hard")  # the classic dunning case, whatever the class
    assert decline_retryable("try_again_later", "technical")
    assert decline_retryable("do_not_honor", "soft")
    for code in ("stolen_card", "lost_card", "expired_card", "fraudulent", "authentication_required",
                 "payment_method_detached"):
        assert not decline_retryable(code, "soft"), code
    assert not decline_retryable("generic_decline", "hard")


def test_a_retry_is_never_sooner_than_the_first_delay_after_the_failure():
    """A failure learnt late (review 16e): its past slot moves to a day after it, later slots hold."""
    t0 = dt.datetime(2027, 1, 1, tzinfo=UTC)
    days = [1, 3, 5, 7]
    late = t0 + dt.timedelta(days=4)
    assert next_retry_at(dunning_started_at=t0, failures=2, schedule_days=days, failed_at=late) == \
        t0 + dt.timedelta(days=5)
    assert next_retry_at(dunning_started_at=t0, failures=3, schedule_days=days, failed_at=t0 + dt.timedelta(days=3)) \
        == t0 + dt.timedelta(days=5)  # on time: the schedule
    assert next_retry_at(dunning_started_at=t0, failures=5, schedule_days=days, failed_at=late) is None


def test_period_at_is_the_last_period_started_by_then_never_before_first():
    from payments.recurring import period_at

    anchor = dt.datetime(2024, 1, 31, 12, 0, tzinfo=dt.UTC)  # clamped: Feb 29 (leap), Mar 31, Apr 30
    assert period_at(anchor, "month", 1, anchor) == 0
    assert period_at(anchor, "month", 1, dt.datetime(2024, 2, 29, 11, 59, tzinfo=dt.UTC)) == 0
    assert period_at(anchor, "month", 1, dt.datetime(2024, 2, 29, 12, 0, tzinfo=dt.UTC)) == 1
    assert period_at(anchor, "month", 1, dt.datetime(2024, 4, 30, 12, 0, tzinfo=dt.UTC)) == 3
    assert period_at(anchor, "month", 1, dt.datetime(2024, 2, 1, tzinfo=dt.UTC), first=2) == 2
    leap = dt.datetime(2024, 2, 29, tzinfo=dt.UTC)
    assert period_at(leap, "year", 1, dt.datetime(2025, 2, 28, tzinfo=dt.UTC)) == 1  # Feb 28 in a common year
    assert period_at(leap, "year", 1, dt.datetime(2028, 2, 28, 23, 59, tzinfo=dt.UTC)) == 3
    assert period_at(leap, "year", 1, dt.datetime(2028, 2, 29, tzinfo=dt.UTC)) == 4
    assert period_at(anchor, "week", 2, anchor + dt.timedelta(days=27)) == 1
