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
