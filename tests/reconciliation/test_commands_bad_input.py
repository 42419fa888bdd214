"""Settlement and payout commands on bad input: a clear `CommandError` (exit 1, no traceback)
before anything moves, never a silent exit 0."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from reconciliation.models import Payout, PayoutStatus, SettlementRun
from reconciliation.services import payout_settings_update
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import BANK_ACCOUNT, post_capture

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def settled():
    """A merchant whose capture is settled: today's payout run creates one payout."""
    merchant = MerchantFactory(settlement_delay_days=1)
    payout_settings_update(
        merchant_id=merchant.id,
        bank_account=BANK_ACCOUNT,
        bank_account_holder="Shop GmbH",
        reserve_bps=0,
        minimum_payout_amounts={"EUR": 100},
    )
    post_capture(merchant.id, gross=10_000, fee=300, at=NOW - timedelta(days=30))
    call_command("run_settlement", "--merchant", merchant.id, "--json", stdout=StringIO())
    return merchant


def test_a_payout_file_that_can_not_be_written_sends_nothing(settled, tmp_path):
    """The payouts were marked in transit first and the file written after: an unwritable path
    ended in a traceback with the payouts in transit and no file for the bank, and a second run
    sent nothing (they were no longer pending), so the money waited for a file nobody had."""
    missing = tmp_path / "no-such-dir" / "payouts.csv"
    with pytest.raises(CommandError, match="no-such-dir"):
        call_command("run_payouts", "--merchant", settled.id, "--send", "--file", str(missing), stdout=StringIO())
    assert not Payout.objects.exclude(status=PayoutStatus.PENDING).exists()
    written = tmp_path / "payouts.csv"
    call_command("run_payouts", "--merchant", settled.id, "--send", "--file", str(written), stdout=StringIO())
    [payout] = Payout.objects.all()
    assert payout.status == PayoutStatus.IN_TRANSIT and payout.id in written.read_text()


def test_a_payout_file_already_there_is_not_overwritten_and_nothing_is_sent(settled, tmp_path):
    """`--file` opened the path with "w": yesterday's file, still waiting for the bank to pick it up
    at a fixed path, was overwritten by today's, so yesterday's payouts (in transit, never sent
    again) were paid by nobody. A file already there is now refused before anything is sent, and
    the file is written whole or not at all (a temporary file linked into place)."""
    waiting = tmp_path / "payouts.csv"
    waiting.write_text("yesterday's payouts\n")
    with pytest.raises(CommandError, match="already exists"):
        call_command("run_payouts", "--merchant", settled.id, "--send", "--file", str(waiting), stdout=StringIO())
    assert waiting.read_text() == "yesterday's payouts\n"
    assert not Payout.objects.exclude(status=PayoutStatus.PENDING).exists()
    today = tmp_path / "payouts-2.csv"
    call_command("run_payouts", "--merchant", settled.id, "--send", "--file", str(today), stdout=StringIO())
    [payout] = Payout.objects.all()
    assert payout.status == PayoutStatus.IN_TRANSIT and payout.id in today.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["payouts-2.csv", "payouts.csv"]  # no temporary left


def test_a_payout_file_without_send_is_refused(settled, tmp_path):
    """`--file` without `--send` wrote nothing and exited 0: the operator believed the file made."""
    with pytest.raises(CommandError, match="--send"):
        call_command("run_payouts", "--file", str(tmp_path / "payouts.csv"), stdout=StringIO())
    assert not Payout.objects.exists()


@pytest.mark.parametrize("command", ["run_settlement", "run_payouts"])
def test_an_unknown_merchant_is_refused(settled, command):
    """A mistyped `--merchant` settled and paid nothing and exited 0 with an empty report."""
    runs = SettlementRun.objects.count()
    with pytest.raises(CommandError, match="mer_typo"):
        call_command(command, "--merchant", "mer_typo", "--json", stdout=StringIO())
    assert SettlementRun.objects.count() == runs and not Payout.objects.exists()


def test_reconcile_tells_an_unknown_psp_from_one_without_credentials(tmp_path):
    """Both were "unknown PSP": `--psp alpha` on a database whose secrets backend has no alpha
    credentials yet said "unknown PSP 'alpha'", sending the operator after a typo that was not there."""
    report = tmp_path / "report.csv"
    report.write_text("a,b\n")
    with pytest.raises(CommandError) as missing:
        call_command("reconcile", str(report), "--psp", "alpha", "--json", stdout=StringIO())
    assert "unknown" not in str(missing.value).lower() and "credentials" in str(missing.value)
    with pytest.raises(CommandError, match=r"unknown PSP 'gamma'.*alpha, beta"):
        call_command("reconcile", str(report), "--psp", "gamma", "--json", stdout=StringIO())


@pytest.mark.parametrize("args", [["--max-age-days", "0"], ["--max-age-days", "-1"], ["--max-age-days", "999999999"],
                                  ["--limit", "0"], ["--limit", "-5"]])  # fmt: skip
def test_reconcile_heal_refuses_a_window_or_limit_that_can_not_be(args):
    """A negative or zero window or limit looked at nothing and exited 0 ("0 lines": all seemed
    healed); a window past the calendar's start ended in an OverflowError traceback."""
    with pytest.raises(CommandError, match=args[0]):
        call_command("reconcile_heal", *args, "--json", stdout=StringIO())
