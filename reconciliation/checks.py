"""System checks: a default payout minimum table that cannot price every currency stops the
process at start, not at the payout run (docs/settlement.md "Payouts")."""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from django.core.checks import Error, register

from payera.core.money import PER_CURRENCY_FALLBACK, per_currency_table_problems


@register()
def check_payout_minimum(app_configs=None, **kwargs):
    table = getattr(settings, "RECONCILIATION_PAYOUT_MINIMUM", None)
    return [Error(problem, id="reconciliation.E001")
            for problem in per_currency_table_problems(table, setting="RECONCILIATION_PAYOUT_MINIMUM", least=1)]


# name -> (the least it may be, whether that least is allowed)
_DURATIONS = {
    "RECONCILIATION_RUN_BUSY_MINUTES": (0.0, False),  # 0 or less: every running import looks crashed
    "RECONCILIATION_PULL_BUSY_POLL_SECONDS": (0.0, False),
    "RECONCILIATION_PULL_BUSY_WAIT_SECONDS": (0.0, True),
    "RECONCILIATION_PULL_DEADLINE_SECONDS": (0.0, False),
}


@register()
def check_import_durations(app_configs=None, **kwargs):
    """The busy window of an import and the pull's wait: a window of 0 or less would make every
    running import look crashed, so each start would take over and undo the one before."""
    errors = []
    for name, (least, allowed) in _DURATIONS.items():
        value = getattr(settings, name, None)
        if value is None:
            continue
        ok = isinstance(value, int | float) and not isinstance(value, bool) and (
            value >= least if allowed else value > least)  # fmt: skip
        if not ok:
            bound = f"at least {least:g}" if allowed else f"more than {least:g}"
            errors.append(Error(f"{name} must be a number {bound} (it is {value!r}).", id="reconciliation.E002"))
    return errors


# what the pull's deadline leaves under the broker's visibility timeout: the last import started
# before the deadline runs to its end (about a minute per million rows), after the fetch (its timeouts)
PULL_DEADLINE_MARGIN_SECONDS = 600


@register()
def check_pull_deadline(app_configs=None, **kwargs):
    """The scheduled pull's total deadline must end safely before the broker's visibility timeout:
    a task still running past it is delivered again (acks_late), and a second pull runs beside the
    first (docs/reconciliation.md "Three ways in")."""
    deadline = getattr(settings, "RECONCILIATION_PULL_DEADLINE_SECONDS", None)
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    visibility = options.get("visibility_timeout") if isinstance(options, dict) else None
    if not isinstance(deadline, int | float) or isinstance(deadline, bool) or deadline <= 0:
        return []  # reconciliation.E002 says so
    if isinstance(visibility, int | float) and deadline > visibility - PULL_DEADLINE_MARGIN_SECONDS:
        return [Error(
            f"RECONCILIATION_PULL_DEADLINE_SECONDS ({deadline:g}) must be at least {PULL_DEADLINE_MARGIN_SECONDS} s"
            f" under the broker's visibility_timeout ({visibility:g} s): a pull still running past it is"
            " delivered again and runs twice.",
            id="reconciliation.E003",
        )]  # fmt: skip
    return []


@register()
def check_approval_thresholds(app_configs=None, **kwargs):
    """The four-eyes thresholds (docs/reconciliation.md "Four eyes"): ISO 4217 codes to minor units,
    none negative; a typo would silently leave a currency on the default."""
    table = getattr(settings, "RECONCILIATION_APPROVAL_THRESHOLDS", None)
    if isinstance(table, Mapping):
        table = {**table, PER_CURRENCY_FALLBACK: getattr(settings, "RECONCILIATION_APPROVAL_THRESHOLD", None)}
    problems = per_currency_table_problems(table, setting="RECONCILIATION_APPROVAL_THRESHOLDS", least=0)
    return [Error(problem.replace(f"[{PER_CURRENCY_FALLBACK!r}]", " (RECONCILIATION_APPROVAL_THRESHOLD)"),
                  id="reconciliation.E004") for problem in problems]  # fmt: skip


@register()
def check_daily_single_handed_limits(app_configs=None, **kwargs):
    """The four-eyes daily limits per user (docs/reconciliation.md "Four eyes"): ISO 4217 codes to
    minor units, none negative; a typo would silently leave a currency on the default (5 times its
    threshold)."""
    table = getattr(settings, "RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS", None)
    if table is None:
        return []
    if isinstance(table, Mapping):
        table = {**table, PER_CURRENCY_FALLBACK: 0}  # the default is derived from the thresholds (E004)
    problems = per_currency_table_problems(table, setting="RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS", least=0)
    return [Error(problem.replace(f" (with a {PER_CURRENCY_FALLBACK!r} entry)", ""), id="reconciliation.E005")
            for problem in problems]  # fmt: skip
