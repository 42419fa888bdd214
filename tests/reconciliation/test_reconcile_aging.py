"""Aging and the report's period (docs/reconciliation.md, "Discrepancies" and "Aging"), with real
sandbox captures: a capture that succeeded outside every report's period is not missing at the PSP,
only aging; a backdated capture lands in the bucket of its age."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from payments.models import Capture
from reconciliation.models import Discrepancy
from reconciliation.selectors import receivable_aging, receivable_check
from reconciliation.services import reconcile_import
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.sandbox_day import pay, report

pytestmark = pytest.mark.django_db(transaction=True)


def _backdate(capture: Capture, days: float) -> None:
    """The capture succeeded `days` ago (its success time: `updated_at`)."""
    Capture.objects.filter(pk=capture.pk).update(updated_at=timezone.now() - dt.timedelta(days=days))


def test_a_capture_outside_every_reports_period_is_only_aging_in_the_bucket_of_its_age(day):
    merchant = MerchantFactory(connectors=["alpha"])
    pay(merchant, [1_000, 2_500])
    old = Capture.objects.get(amount=2_500)
    _backdate(old, 5)  # five days ago: before today's report
    header, *body, trailer = report("alpha").decode().splitlines()
    today = [line for line in body if ",2500," not in line]  # the PSP settled it on another day
    assert len(today) == 1
    result = reconcile_import(psp="alpha", raw=("\n".join([header, *today, trailer]) + "\n").encode())
    assert (result.rows, result.matched, sum(result.discrepancies.values())) == (1, 1, 0)
    assert not Discrepancy.objects.exists()  # not missing at the PSP: outside the period
    assert receivable_aging(psp="alpha") == [{"bucket": "4-7 days", "currency": "EUR", "amount": 2_500, "count": 1}]
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 2_500


def test_backdated_captures_land_in_the_bucket_of_their_age(day):
    merchant = MerchantFactory(connectors=["alpha"])
    ages = {100: 0.5, 200: 2.5, 300: 4.2, 400: 7.9, 500: 8.1, 600: 31.5}  # amount: days since it succeeded
    pay(merchant, list(ages))
    for capture in Capture.objects.all():
        _backdate(capture, ages[capture.amount])
    assert [(a["bucket"], a["amount"], a["count"]) for a in receivable_aging(psp="alpha")] == [
        ("0-1 days", 100, 1), ("2-3 days", 200, 1), ("4-7 days", 700, 2), ("8-30 days", 500, 1),
        ("over 30 days", 600, 1)]
