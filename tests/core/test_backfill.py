"""payera.core.backfill refuses to run inside a caller's transaction, which would hold every batch
until it commits (docs/runbooks/backfill.md); its batches are covered by
tests/payments/test_refund_times_migration.py. `manage.py backfill` takes only an installed app's
migration by its full name, and a batch size of at least one."""

from __future__ import annotations

import sys

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from payera.core.backfill import Backfill, run_backfill
from tests.merchants.factories import MerchantFactory

NOTHING = Backfill(table="merchants_merchant", set="name = name", pending="1 = 0")


@pytest.mark.django_db(transaction=True)
def test_a_backfill_inside_a_transaction_is_refused():
    MerchantFactory()  # a row pending: a batch to run
    with transaction.atomic(), pytest.raises(RuntimeError, match="durable"):
        run_backfill(Backfill(table="merchants_merchant", set="name = name", pending="1 = 1"), batch_size=10)


@pytest.mark.django_db(transaction=True)
def test_a_backfill_with_nothing_pending_runs_no_batch():
    assert run_backfill(NOTHING, batch_size=10).batches == 0
    with pytest.raises(ValueError):
        run_backfill(NOTHING, batch_size=0)


@pytest.mark.parametrize(
    ("app_label", "migration"),
    [
        ("this", "x"),  # any importable package: imported (and run) before the migration is missed
        ("", "0025_refund_times_backfill"),  # a relative import: TypeError, not the command's error
        ("django.contrib.flatpages", "0001_initial"),  # a migration of an app not installed
        ("payments", "0025"),  # the full name, as the runbook says
    ],
)
def test_the_backfill_command_runs_only_an_installed_apps_migration(monkeypatch, app_label, migration):
    monkeypatch.delitem(sys.modules, "this", raising=False)
    with pytest.raises(CommandError, match="no migration"):
        call_command("backfill", app_label, migration)
    assert "this" not in sys.modules  # `this` prints the Zen of Python when imported


@pytest.mark.parametrize("size", ["0", "-1"])
def test_the_backfill_command_refuses_a_batch_size_below_one(size):
    with pytest.raises(CommandError, match="batch-size"):
        call_command("backfill", "payments", "0025_refund_times_backfill", "--batch-size", size)
