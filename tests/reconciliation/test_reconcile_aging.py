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


def test_the_lines_of_an_import_that_did_not_finish_leave_the_aging_as_the_check_counts_it(
    a_day_of_payments, monkeypatch
):
    """What was wrong: the aging's "settled" test (`_unsettled_sql`, reconciliation/selectors.py)
    counted any report line with a journal reference, while a line has one from its match on and
    its journal is posted only by the run's finish (the run then `done`). An import that failed in
    its finish and whose undo failed too (the database gone; the run left in `posting` with its
    lines, until the next import of the PSP undoes it) took the day's captures out of the aging:
    finance saw an empty aging (0) beside a receivable of 122.30 that the check, which counts
    finished runs only, reported `ok`. The buckets did not add up to the receivable. What holds
    now: only the lines of a finished (`done`) run settle an item, as for the check and the
    resolutions (`item_settled`)."""
    from reconciliation.services import reconcile

    def lost(*args, **kwargs):
        raise RuntimeError("connection lost in the finish")

    with monkeypatch.context() as m:
        m.setattr(reconcile, "_finish", lost)
        m.setattr(reconcile, "_run_fail", lambda run, exc: None)  # the undo fails as well
        with pytest.raises(RuntimeError, match="connection lost"):
            reconcile_import(psp="alpha", raw=report("alpha"))
    [check] = receivable_check(psp="alpha")
    assert check["ok"] and check["ledger"] == 12_230, check  # nothing settled: the journal was never posted
    aging = receivable_aging(psp="alpha")
    assert sum(b["amount"] for b in aging) == check["ledger"], aging
    assert aging == [{"bucket": "0-1 days", "currency": "EUR", "amount": 12_230, "count": 4}]
