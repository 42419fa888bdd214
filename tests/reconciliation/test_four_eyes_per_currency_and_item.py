"""Four eyes on discrepancy money resolutions (docs/reconciliation.md, "Four eyes"): the threshold is
per currency, and it holds for what one item's resolutions moved without approval, all together.

Before: `RECONCILIATION_APPROVAL_THRESHOLD` was one number of minor units for every currency (100000
is 1,000.00 EUR but ¥100,000 and 100.000 BHD), and it was measured per discrepancy: a capture with
two discrepancies took two adjustments under the threshold, one finance user alone, and two such
adjustments racing each other both went through. Real sandbox payments and their real alpha report,
on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from django.conf import settings as django_settings
from django.db import connection

from payments.models import Capture
from reconciliation.errors import DiscrepancyNeedsApprovalError
from reconciliation.models import Discrepancy, DiscrepancyApproval
from reconciliation.services import (
    discrepancy_approval_approve,
    discrepancy_request,
    discrepancy_resolve,
    discrepancy_write_off,
    reconcile_import,
)
from tests.reconciliation.sandbox_day import CARD, report, settle_pending
from tests.reconciliation.test_reconcile_resolutions import alpha_day, finance, journals, ties_out

pytestmark = pytest.mark.django_db(transaction=True)

GROSS, NET = 8, 10  # alpha's report columns


def test_the_default_threshold_means_the_same_major_units_in_every_currency(settings):
    """The old setting is the default: hundredths of the major unit (100000: 1,000.00 EUR), scaled
    to each currency's ISO 4217 exponent; the per-currency table names a currency's own minor
    units."""
    from reconciliation.services.discrepancies import approval_threshold

    settings.RECONCILIATION_APPROVAL_THRESHOLD = 100_000
    settings.RECONCILIATION_APPROVAL_THRESHOLDS = {}
    assert approval_threshold("EUR") == 100_000  # 1,000.00 EUR, as before
    assert approval_threshold("JPY") == 1_000  # ¥1,000 (JPY has no decimals), not ¥100,000
    assert approval_threshold("BHD") == 1_000_000  # 1,000.000 BHD, not 100.000
    settings.RECONCILIATION_APPROVAL_THRESHOLDS = {"JPY": 150_000}
    assert approval_threshold("jpy") == 150_000 and approval_threshold("EUR") == 100_000
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 0  # 0: every money resolution needs a second user
    assert approval_threshold("KWD") == 0 and approval_threshold("JPY") == 150_000


def test_the_table_is_read_from_the_environment_and_checked():
    """`RECONCILIATION_APPROVAL_THRESHOLDS=JPY=150000,bhd=500000` (django-environ's dict syntax)."""
    code = (
        "import django; django.setup(); from django.conf import settings as s; from django.core import checks;"
        " print(s.RECONCILIATION_APPROVAL_THRESHOLDS, s.RECONCILIATION_APPROVAL_THRESHOLD);"
        " print(sorted(m.id for m in checks.run_checks() if m.id.startswith('reconciliation.')))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "payera.settings.test", "DATABASE_URL": "sqlite:///:memory:"}

    def run(value: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, "RECONCILIATION_APPROVAL_THRESHOLDS": value},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=django_settings.BASE_DIR,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip().splitlines()[-2:]

    assert run("JPY=150000,bhd=500000") == ["{'JPY': 150000, 'BHD': 500000} 100000", "[]"]
    assert run("XYZ=5")[1] == "['reconciliation.E004']"


def _jpy_capture_missing_at_the_psp(day) -> Discrepancy:
    """A ¥5,000 capture (and a 10.00 EUR one) of a real alpha payment; alpha's report without the
    yen row: the ¥5,000 capture is missing at the PSP."""
    from payments.services import payment_create
    from tests.merchants.factories import MerchantFactory

    merchant = MerchantFactory(connectors=["alpha"])
    payment_create(merchant=merchant, amount=1_000, currency="EUR", payment_method_data=CARD)
    payment_create(merchant=merchant, amount=5_000, currency="JPY", payment_method_data=CARD)
    settle_pending()
    lines = report("alpha").decode().splitlines()
    rows = [line for line in lines[1:-1] if ",JPY," not in line]
    assert len(rows) == len(lines) - 3
    raw = "\n".join([lines[0], *rows, lines[-1]]) + "\n"
    reconcile_import(psp="alpha", raw=raw.encode())
    return Discrepancy.objects.get(kind="missing_at_psp", currency="JPY")


def test_a_yen_write_off_above_a_thousand_yen_waits_by_default(day):
    """Before: ¥5,000 (about 30 EUR) was under the default of 100000 "minor units" and written off by
    one user; JPY has no minor unit below the yen, so the default meant ¥100,000. Now the default
    means 1,000 yen as it means 1,000 euros."""
    d = _jpy_capture_missing_at_the_psp(day)
    assert d.payera_amount == 5_000
    fin = finance("fin1")
    with pytest.raises(DiscrepancyNeedsApprovalError, match="5000 JPY"):
        discrepancy_write_off(discrepancy_id=d.pk, user=fin, reason="alpha will never pay this")
    assert journals("recon_write_off:") == 0
    approval = discrepancy_request(action="write_off", discrepancy_id=d.pk, user=fin, reason="alpha will never pay")
    assert isinstance(approval, DiscrepancyApproval) and (approval.amount, approval.currency) == (5_000, "JPY")
    assert discrepancy_approval_approve(approval_id=approval.pk, user=finance("fin2"), note="checked").status == "done"
    ties_out()


def two_discrepancies_of_the_2500_capture() -> tuple[Discrepancy, Discrepancy]:
    """The 2,500 capture missing from the day's report (missing at PSP), then reported by another
    report at 2,600 (an amount mismatch): two open discrepancies of the one capture."""
    first = alpha_day(keep=(0, 2, 3)).discrepancies.get(kind="missing_at_psp")

    def more(i, cols):
        cols[GROSS], cols[NET] = str(int(cols[GROSS]) + 100), str(int(cols[NET]) + 100)

    second = alpha_day(more, keep=(1,)).discrepancies.get(kind="amount_mismatch")
    assert first.object_id == second.object_id == Capture.objects.get(amount=2_500).pk
    return first, second


def test_adjustments_split_over_an_items_discrepancies_still_wait(a_day_of_payments, settings):
    """Before: 800 + 800 of the 2,500 capture were taken off the receivable by one user alone under a
    threshold of 1,000, one adjustment on each of its two discrepancies. Now what the item's
    resolutions moved without approval counts: the second waits for a second user; once approved it
    does not count against the next."""
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 1_000
    first, second = two_discrepancies_of_the_2500_capture()
    fin = finance("fin1")
    discrepancy_resolve(discrepancy_id=first.pk, user=fin, reason="PSP fee agreed", adjustment=800, currency="EUR")
    with pytest.raises(DiscrepancyNeedsApprovalError, match="with the 800 .* moves 1600"):
        discrepancy_resolve(discrepancy_id=second.pk, user=fin, reason="PSP fee agreed", adjustment=800,
                            currency="EUR")  # fmt: skip
    assert journals("recon_adjustment:") == 1 and Discrepancy.objects.get(pk=second.pk).status == "open"
    approval = discrepancy_request(action="resolve", discrepancy_id=second.pk, user=fin, reason="PSP fee agreed",
                                   adjustment=800, currency="EUR")  # fmt: skip
    assert isinstance(approval, DiscrepancyApproval) and approval.amount == 800
    assert (
        discrepancy_approval_approve(approval_id=approval.pk, user=finance("fin2"), note="checked it").status == "done"
    )
    assert journals("recon_adjustment:") == 2
    ties_out()


def test_two_adjustments_of_one_item_racing_under_the_threshold_do_not_both_pass(a_day_of_payments, settings):
    """Two finance users (or one, twice) adjust the two discrepancies of one capture at the same
    moment, 600 each under a threshold of 1,000: together 1,200. Real threads on PostgreSQL: one
    runs, the other needs a second user (the PSP's reconciliation lock serializes them, and each
    counts what the other committed)."""
    settings.RECONCILIATION_APPROVAL_THRESHOLD = 1_000
    first, second = two_discrepancies_of_the_2500_capture()
    users = [finance("fin1"), finance("fin2")]
    start, answers = threading.Barrier(2), []

    def adjust(d, user):
        try:
            start.wait()
            discrepancy_resolve(discrepancy_id=d.pk, user=user, reason="PSP fee agreed", adjustment=600,
                                currency="EUR")  # fmt: skip
            answers.append("resolved")
        except DiscrepancyNeedsApprovalError:
            answers.append("needs approval")
        finally:
            connection.close()

    threads = [threading.Thread(target=adjust, args=args) for args in zip((first, second), users, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(answers) == ["needs approval", "resolved"]
    assert journals("recon_adjustment:") == 1
    ties_out()


def test_the_migration_fills_in_what_earlier_resolutions_moved_alone(a_day_of_payments, settings):
    """Resolutions made before the upgrade count: an adjustment made alone gets its amount, one a
    second user approved gets 0."""
    from django.db.migrations.executor import MigrationExecutor

    settings.RECONCILIATION_APPROVAL_THRESHOLD = 1_000
    first, second = two_discrepancies_of_the_2500_capture()
    fin = finance("fin1")
    discrepancy_resolve(discrepancy_id=first.pk, user=fin, reason="PSP fee agreed", adjustment=700,
                        currency="EUR")  # fmt: skip
    approval = discrepancy_request(action="resolve", discrepancy_id=second.pk, user=fin,
                                   reason="PSP fee agreed", adjustment=1_200, currency="EUR")  # fmt: skip
    discrepancy_approval_approve(approval_id=approval.pk, user=finance("fin2"), note="checked it")
    pks = [first.pk, second.pk]

    def alone() -> dict:
        return {d.pk: (d.moved_alone, d.moved_alone_currency) for d in Discrepancy.objects.filter(pk__in=pks)}

    moved = alone()
    assert moved == {first.pk: (700, "EUR"), second.pk: (0, "")}
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([("reconciliation", "0018_discrepancy_missing_once_each_way")])
        executor = MigrationExecutor(connection)
        executor.migrate([("reconciliation", "0019_discrepancy_moved_alone")])
        assert alone() == moved
    finally:  # the later migrations back, for the tests after this one in the same database
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_a_bulk_write_off_asks_once_per_row_in_one_submit_and_says_so(client, a_day_of_payments, settings):
    """Writing off several discrepancies above the threshold at once: one submit creates one
    approval per discrepancy (each its own item's money), and the page sums them up in one line
    naming every approval, beside each row's own message."""
    from tests.backoffice.staff import otp_force_login
    from tests.reconciliation.test_reconcile_resolutions import act

    settings.RECONCILIATION_APPROVAL_THRESHOLD = 500
    two = alpha_day(keep=(0, 3)).discrepancies.filter(kind="missing_at_psp")  # the 2,500 and the 730 captures
    otp_force_login(client, finance("fin1"))
    page = act(client, "write_off", [d.pk for d in two])
    approvals = list(DiscrepancyApproval.objects.order_by("pk"))
    assert sorted(a.amount for a in approvals) == [730, 2_500] and journals("recon_write_off:") == 0
    ids = ", ".join(str(a.pk) for a in approvals)
    assert f"2 discrepancies wait for a second user&#x27;s approval (discrepancy approvals {ids})" in page
