"""System checks: a default payout minimum table that cannot price every currency stops the
process at start, not at the payout run (docs/settlement.md "Payouts")."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from payera.core.money import per_currency_table_problems


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
