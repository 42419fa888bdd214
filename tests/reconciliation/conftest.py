"""Fixtures of the reconciliation tests: a clean sandbox day, and a day of real payments."""

from __future__ import annotations

import pytest
from django.db import connection

from payments.models import Capture
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.sandbox_day import pay


@pytest.fixture
def day(psp_settings):
    """A clean sandbox day: the session-wide sandboxes forget other tests' payments."""
    for sb in psp_settings.values():
        sb.reset()
    return psp_settings


@pytest.fixture
def a_day_of_payments(day):
    alpha = MerchantFactory(connectors=["alpha"])
    beta = MerchantFactory(connectors=["beta"])
    pay(alpha, [10_000, 2_500, 730], refund={0: 1_000})
    pay(beta, [4_200, 999], refund={0: 4_200})
    assert Capture.objects.filter(status="succeeded").count() == 5
    return alpha, beta


@pytest.fixture
def statements():
    """Every SQL statement the test runs, as sent."""
    seen: list[str] = []

    def spy(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        yield seen
