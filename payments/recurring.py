"""Pure rules of recurring charges: period boundaries and the dunning policy. No I/O."""

from __future__ import annotations

import calendar
import datetime as dt

from psp_adapters.port import DeclineClass, DeclineCode

# Declines a later retry of the same card can overcome (dunning "soft" declines), whatever class
# the connector gives them for cascading: insufficient funds is final for *this* authorization
# (no other connector will pass it now) but the classic case of "retry in a few days".
RETRYABLE_LATER = frozenset({
    DeclineCode.INSUFFICIENT_FUNDS.value,
    DeclineCode.DO_NOT_HONOR.value,
    DeclineCode.TRY_AGAIN_LATER.value,
    DeclineCode.PROCESSING_ERROR.value,
})
# Never retried without the customer: the card is gone, refused for good, or must be authenticated.
NEVER_RETRY = frozenset({
    DeclineCode.AUTHENTICATION_REQUIRED.value,
    DeclineCode.AUTHENTICATION_FAILED.value,
    DeclineCode.EXPIRED_CARD.value,
    DeclineCode.LOST_CARD.value,
    DeclineCode.STOLEN_CARD.value,
    DeclineCode.FRAUDULENT.value,
    DeclineCode.INCORRECT_NUMBER.value,
    DeclineCode.CARD_NOT_SUPPORTED.value,
    DeclineCode.INVALID_ACCOUNT.value,
    "payment_method_detached",
    "payment_method_not_reusable",
})


def add_months(start: dt.datetime, months: int) -> dt.datetime:
    """`start` plus whole months, the day clamped to the month's length (Jan 31 + 1 = Feb 28/29)."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def period_start(anchor: dt.datetime, interval: str, interval_count: int, n: int) -> dt.datetime:
    """Start of period `n` (0 = the anchor). Computed from the anchor, never from the previous
    period, so a clamped month (Jan 31 → Feb 28) does not drift the later ones."""
    steps = n * interval_count
    if interval == "day":
        return anchor + dt.timedelta(days=steps)
    if interval == "week":
        return anchor + dt.timedelta(weeks=steps)
    if interval == "month":
        return add_months(anchor, steps)
    if interval == "year":
        return add_months(anchor, 12 * steps)
    raise ValueError(f"unknown interval {interval!r}")


def period_at(anchor: dt.datetime, interval: str, interval_count: int, at: dt.datetime, *, first: int = 0) -> int:
    """The period in progress at `at` (the last one started by then), and never one before `first`."""
    n = first
    while period_start(anchor, interval, interval_count, n + 1) <= at:
        n += 1
    return n


def decline_retryable(code: str, decline_class: str = "") -> bool:
    """Whether a failed charge is retried on the dunning schedule (soft) or stops at once (hard)."""
    if code in NEVER_RETRY:
        return False
    if code in RETRYABLE_LATER:
        return True
    return decline_class in (DeclineClass.SOFT.value, DeclineClass.TECHNICAL.value)


def next_retry_at(*, dunning_started_at: dt.datetime, failures: int, schedule_days: list[int],
                  failed_at: dt.datetime | None = None) -> dt.datetime | None:
    """After `failures` failed tries of a period (1 = the first charge failed): when to try again,
    counted from when the period's charge was due (days 1, 3, 5, 7 by default), or None when
    retries are spent. A slot already past at `failed_at` (when the failure was learnt: a SEPA
    refusal after days of processing, a scheduler that was down) moves to the schedule's first
    delay after it, so a late failure is not retried in a burst on the next ticks."""
    if failures < 1 or failures > len(schedule_days):
        return None
    at = dunning_started_at + dt.timedelta(days=schedule_days[failures - 1])
    if failed_at is not None and at <= failed_at:
        at = failed_at + dt.timedelta(days=schedule_days[0])
    return at
