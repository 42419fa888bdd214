"""The default minimum payout is per currency, in that currency's own minor units; a merchant's own
minimum (`payout_settings --minimum N`) stays one number of minor units, and `--minimum-default`
goes back to the currency defaults.

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
from django.core.management import call_command

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


def test_a_merchants_own_minimum_applies_in_every_currency_until_it_goes_back_to_the_defaults():
    merchant = _merchant_with("JPY", 1_000)
    out = StringIO()
    call_command("payout_settings", merchant.id, "--minimum", "500", stdout=out)
    assert json.loads(out.getvalue())["minimum_payout_amount"] == 500
    payout_settings_update(merchant_id=merchant.id, minimum_payout_default=True)
    assert payout_create(merchant_id=merchant.id, currency="JPY", now=NOW).reason == "below_minimum"  # ¥1,500
    call_command("payout_settings", merchant.id, "--minimum", "500", stdout=StringIO())
    assert payout_create(merchant_id=merchant.id, currency="JPY", now=NOW + timedelta(days=1)).created
    out = StringIO()
    call_command("payout_settings", merchant.id, "--minimum-default", stdout=out)
    assert json.loads(out.getvalue())["minimum_payout_amount"] is None
    assert MerchantPayoutSettings.objects.get(pk=merchant.id).minimum_payout_amount is None


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
