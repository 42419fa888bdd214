"""System checks: a chargeback fee table that cannot price every currency stops the process at
start, not at the first dispute (docs/payments.md "Settings")."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from payera.core.money import per_currency_table_problems


@register()
def check_chargeback_fee(app_configs=None, **kwargs):
    table = getattr(settings, "PAYMENTS_CHARGEBACK_FEE", None)
    return [Error(problem, id="payments.E001")
            for problem in per_currency_table_problems(table, setting="PAYMENTS_CHARGEBACK_FEE", least=0)]
