"""The minimum payout is per currency, in that currency's own minor units: the merchant's own for the
currencies it named (`payout_settings --minimum EUR=5000`), else the currency's default;
`--minimum-default` goes back to the currency defaults.

What was wrong (fix 14a): the default minimum was 1000 minor units whatever the currency
(reconciliation.models.DEFAULT_MINIMUM_PAYOUT): 10.00 EUR, but ¥1,000 and 1.000 KWD (about EUR 3).
With RECONCILIATION_PAYOUT_MINIMUM = {"EUR": 1000, "JPY": 1500, "KWD": 3000, "*": 1000, ...}
a merchant without its own minimum is paid out at least 10.00 EUR, ¥1,500 or 3.000 KWD."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command

from reconciliation.models import MerchantPayoutSettings
from reconciliation.services import payout_create, payout_settings_update, settlement_run
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import BANK_ACCOUNT, available, post_capture

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _merchant_with(currency: str, net: int):
    """A merchant without its own minimum, with `net` minor units of `currency` available."""
    merchant = MerchantFactory(settlement_delay_days=1)
    payout_settings_update(merchant_id=merchant.id, bank_account=BANK_ACCOUNT, bank_account_holder="Shop GmbH")
    post_capture(merchant.id, gross=net + 1, fee=1, currency=currency, at=NOW - timedelta(days=3))
    settlement_run(merchant_id=merchant.id, now=NOW)
    assert available(merchant.id, currency) == net
    return merchant


@pytest.mark.parametrize(
    "currency, below, enough",
    [("EUR", 999, 1000), ("JPY", 1499, 1500), ("KWD", 2999, 3000)],
    ids=["EUR-2-decimals", "JPY-0-decimals", "KWD-3-decimals"],
)
def test_the_default_minimum_is_the_currencys_own(currency, below, enough):
    small = _merchant_with(currency, below)
    refused = payout_create(merchant_id=small.id, currency=currency, now=NOW)
    assert (refused.created, refused.reason) == (False, "below_minimum")
    assert available(small.id, currency) == below
    big = _merchant_with(currency, enough)
    paid = payout_create(merchant_id=big.id, currency=currency, now=NOW)
    assert (paid.created, paid.amount, paid.currency) == (True, enough, currency)


def test_a_currency_missing_from_the_table_derives_from_the_star_entry_and_says_so(settings, caplog):
    settings.RECONCILIATION_PAYOUT_MINIMUM = {"EUR": 1000, "*": 1000}  # 10.00 of the major unit
    small = _merchant_with("KWD", 9_999)  # 10.000 KWD derived: 9.999 is below it
    with caplog.at_level(logging.WARNING, logger="payera.money"):
        assert payout_create(merchant_id=small.id, currency="KWD", now=NOW).reason == "below_minimum"
    assert "RECONCILIATION_PAYOUT_MINIMUM names no amount for KWD: 10000 minor units derived" in caplog.text
    assert payout_create(merchant_id=_merchant_with("JPY", 10).id, currency="JPY", now=NOW).created  # ¥10


def test_a_merchants_own_minimum_is_per_currency_and_never_another_currencys_number():
    """What was wrong: a merchant's own minimum was one number "in minor units of every currency".
    A EUR merchant that set 5000 (50.00 EUR) had ¥5,000 as its JPY minimum, about EUR 30: a ¥4,000
    balance, above the JPY default (¥1,500), was refused, and with 500 (5.00 EUR) a ¥600 balance
    (about EUR 3.60) was paid out under any sane JPY minimum. The minimum is now per currency, each in
    its own minor units; a currency the merchant did not name takes its platform default."""
    merchant = _merchant_with("JPY", 4_000)
    post_capture(merchant.id, gross=4_000, fee=1, currency="EUR", at=NOW - timedelta(days=3))
    settlement_run(merchant_id=merchant.id, now=NOW)
    payout_settings_update(merchant_id=merchant.id, minimum_payout_amounts={"EUR": 5_000})
    # EUR: the merchant's own 50.00; JPY: not named, its default ¥1,500 (never ¥5,000)
    assert payout_create(merchant_id=merchant.id, currency="EUR", now=NOW).reason == "below_minimum"
    paid = payout_create(merchant_id=merchant.id, currency="JPY", now=NOW)
    assert (paid.created, paid.amount) == (True, 4_000)

    small = _merchant_with("JPY", 600)
    payout_settings_update(merchant_id=small.id, minimum_payout_amounts={"eur": 500})
    assert payout_create(merchant_id=small.id, currency="JPY", now=NOW).reason == "below_minimum"  # ¥1,500
    payout_settings_update(merchant_id=small.id, minimum_payout_amounts={"JPY": 600})
    assert payout_create(merchant_id=small.id, currency="JPY", now=NOW).created
    assert MerchantPayoutSettings.objects.get(pk=small.id).minimum_payout_amounts == {"EUR": 500, "JPY": 600}


def test_the_command_sets_each_currencys_minimum_and_goes_back_to_the_defaults():
    merchant = _merchant_with("JPY", 1_000)
    out = StringIO()
    call_command("payout_settings", merchant.id, "--minimum", "EUR=5000", "--minimum", "jpy=800", stdout=out)
    assert json.loads(out.getvalue())["minimum_payout_amounts"] == {"EUR": 5000, "JPY": 800}
    assert payout_create(merchant_id=merchant.id, currency="JPY", now=NOW).created
    out = StringIO()
    call_command("payout_settings", merchant.id, "--minimum", "JPY=default", stdout=out)
    assert json.loads(out.getvalue())["minimum_payout_amounts"] == {"EUR": 5000}
    out = StringIO()
    call_command("payout_settings", merchant.id, "--minimum-default", stdout=out)
    assert json.loads(out.getvalue())["minimum_payout_amounts"] == {}
    for wrong in ("500", "XXX=5", "EUR=0", "EUR=1.5"):
        with pytest.raises(CommandError):
            call_command("payout_settings", merchant.id, "--minimum", wrong, stdout=StringIO())
    assert MerchantPayoutSettings.objects.get(pk=merchant.id).minimum_payout_amounts == {}


@pytest.mark.parametrize("table", [1000, {"EUR": 1000}, {"eur": 1000, "*": 1000}, {"EUR": 0, "*": 1000}],
                         ids=["one-number", "no-star", "lower-case", "zero"])
def test_a_malformed_table_stops_the_start(settings, table):
    settings.RECONCILIATION_PAYOUT_MINIMUM = table
    assert [e.id for e in run_checks() if e.id == "reconciliation.E001"]


@pytest.mark.parametrize(("name", "value"), [("RECONCILIATION_RUN_BUSY_MINUTES", 0),
                                             ("RECONCILIATION_RUN_BUSY_MINUTES", -5.0),
                                             ("RECONCILIATION_PULL_BUSY_POLL_SECONDS", 0),
                                             ("RECONCILIATION_PULL_BUSY_WAIT_SECONDS", -1),
                                             ("RECONCILIATION_RUN_BUSY_MINUTES", "30")])  # fmt: skip
def test_an_import_busy_window_of_zero_or_less_stops_the_start(settings, name, value):
    """A busy window of 0 or less made every running import look crashed: each start took over and
    undid the one before (review 15e's note). The process now refuses to start with it."""
    assert not [e for e in run_checks() if e.id == "reconciliation.E002"]  # the defaults
    setattr(settings, name, value)
    [error] = [e for e in run_checks() if e.id == "reconciliation.E002"]
    assert name in error.msg


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_a_merchants_minimum_in_the_currency_it_was_set_in():
    """A row's one number (5000) was set in the merchant's default currency (50.00 EUR): it becomes
    {"EUR": 5000}; JPY, never named, goes to its default (¥1,500) instead of ¥5,000; rows without
    their own minimum keep the defaults."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    eur, jpy, plain = MerchantFactory(), MerchantFactory(default_currency="JPY"), MerchantFactory()
    executor = MigrationExecutor(connection)
    before = [("reconciliation", "0015_run_progress_at")]
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps.get_model("reconciliation", "MerchantPayoutSettings")
        old.objects.create(merchant_id=eur.id, minimum_payout_amount=5000)
        old.objects.create(merchant_id=jpy.id, minimum_payout_amount=8000)
        old.objects.create(merchant_id=plain.id, minimum_payout_amount=None)
        executor = MigrationExecutor(connection)
        executor.migrate([("reconciliation", "0016_payout_minimum_each_currency")])
        rows = {r.merchant_id: r.minimum_payout_amounts for r in MerchantPayoutSettings.objects.all()}
        assert rows == {eur.id: {"EUR": 5000}, jpy.id: {"JPY": 8000}, plain.id: {}}
    finally:  # the later migrations back, for the tests after this one in the same database
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
