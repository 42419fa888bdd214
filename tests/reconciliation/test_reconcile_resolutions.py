"""Finance resolving discrepancies with money (issue #8, audit findings 2, 3, 4 and 7), end to end:
real sandbox payments, their real alpha report (changed where a test needs a discrepancy), the
admin actions through the Django test client with a finance user (a non-finance user refused).

After every resolution the ledger holds what really happened (bank cash, PSP fees, the PSP
receivable, suspense, reconciliation differences), the receivable check is `ok` again, the resolved
item leaves the aging, and `ledger_verify` is clean."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission

from ledger.models import Journal
from ledger.selectors import journal_get
from ledger.types import Accounts
from ledger.verify import ledger_verify
from payera.staff.access import ACCESS_ALL_MERCHANTS
from payments.models import Capture
from reconciliation.errors import DiscrepancyMoneyError, DiscrepancyStateError
from reconciliation.models import Discrepancy, ReconciliationRun
from reconciliation.selectors import receivable_aging, receivable_check
from reconciliation.services import (
    discrepancy_resolve,
    discrepancy_settle_as_reported,
    discrepancy_write_off,
    reconcile_import,
)
from tests.backoffice.staff import make_staff, otp_force_login
from tests.reconciliation.helpers import asset
from tests.reconciliation.sandbox_day import CARD, report, settle_pending

pytestmark = pytest.mark.django_db(transaction=True)

DSC = "/admin/reconciliation/discrepancy/"
RUNS = "/admin/reconciliation/reconciliationrun/"
GROSS, FEE, NET = 8, 9, 10  # alpha's report columns


def finance(username: str = "fin"):
    """A finance user who sees every merchant (lines Payera can not tie to a merchant too)."""
    user = make_staff(username, role="finance")
    app, codename = ACCESS_ALL_MERCHANTS.split(".")
    user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    return user


def alpha_day(edit=None, keep=(0, 1, 2, 3)) -> ReconciliationRun:
    """Alpha's report of the day (captures 10,000, 2,500 and 730, a refund of 1,000), only the rows
    `keep`, each row's columns passed through `edit(i, cols)` first; imported."""
    lines = report("alpha").decode().splitlines()
    body = lines[1:-1]
    rows = []
    for i in keep:
        cols = body[i].split(",")
        if edit:
            edit(i, cols)
        rows.append(",".join(cols))
    raw = "\n".join([lines[0], *rows, lines[-1]]) + "\n"
    return ReconciliationRun.objects.get(pk=reconcile_import(psp="alpha", raw=raw.encode()).run_id)


def ties_out(psp: str = "alpha") -> None:
    """The receivable check is ok in every currency, the aging adds up to it, the ledger is clean."""
    checks = receivable_check(psp=psp)
    assert all(c["ok"] for c in checks), checks
    for c in checks:
        aged = sum(a["amount"] for a in receivable_aging(psp=psp) if a["currency"] == c["currency"])
        assert aged == c["ledger"], (c, receivable_aging(psp=psp))
    assert ledger_verify().ok


def act(client, action: str, ids, **fields):
    data = {"action": action, "_selected_action": list(ids), "reason": "checked with alpha", "apply": "1"}
    return client.post(DSC, {**data, **fields}, follow=True).content.decode()


def journals(prefix: str) -> int:
    return Journal.objects.filter(reference__startswith=prefix).count()


def test_an_adjustment_is_one_discrepancys_and_bounded_by_its_item(client, a_day_of_payments):
    # the 2,500 and the 730 captures are missing at the PSP
    run = alpha_day(keep=(0, 3))
    two = run.discrepancies.filter(kind="missing_at_psp").order_by("payera_amount")
    small, big = two
    assert (small.payera_amount, big.payera_amount) == (730, 2_500)
    otp_force_login(client, finance())
    page = act(client, "resolve", [small.pk, big.pk], adjustment="2500", currency="EUR")
    assert "exactly one discrepancy (2 selected)" in page
    assert journals("recon_adjustment:") == 0 and set(two.values_list("status", flat=True)) == {"open"}
    # one row: another currency, more than the item, the wrong direction: refused, nothing posted
    assert "is in EUR, not JPY" in act(client, "resolve", [big.pk], adjustment="2500", currency="JPY")
    assert "between 0 and 2500 EUR" in act(client, "resolve", [big.pk], adjustment="2501", currency="EUR")
    assert "between 0 and 2500 EUR" in act(client, "resolve", [big.pk], adjustment="-100", currency="EUR")
    assert "needs its currency" in act(client, "resolve", [big.pk], adjustment="2500")
    assert journals("recon_adjustment:") == 0 and set(two.values_list("status", flat=True)) == {"open"}
    # the 2,500 in full, the 730 in part: each posted once, the check ok, the aging what is left
    act(client, "resolve", [big.pk], adjustment="2500", currency="EUR")
    act(client, "resolve", [small.pk], adjustment="230", currency="EUR")
    act(client, "resolve", [big.pk], adjustment="2500", currency="EUR")  # again: already resolved
    assert journals("recon_adjustment:") == 2
    assert Discrepancy.objects.get(pk=big.pk).receivable_cleared == 2_500
    ties_out()
    [left] = receivable_aging(psp="alpha")
    assert (left["amount"], left["count"]) == (500, 1)


def test_an_amount_mismatch_settled_as_reported_books_the_money_that_arrived(client, a_day_of_payments):
    def more(i, cols):  # the PSP settled 830 for our 730 capture (fee 35, net 795)
        if i == 2:
            cols[GROSS], cols[NET] = str(int(cols[GROSS]) + 100), str(int(cols[NET]) + 100)

    run = alpha_day(more)
    d = run.discrepancies.get()
    assert (d.kind, d.psp_amount, d.payera_amount, d.line.fee, d.line.net) == ("amount_mismatch", 830, 730, 35, 795)
    bank, fees = asset(Accounts.bank_cash("EUR")), asset(Accounts.psp_fee_expense("EUR"))
    assert receivable_check(psp="alpha")[0]["ok"]  # the mismatched capture is simply unsettled so far
    assert [a["amount"] for a in receivable_aging(psp="alpha")] == [730]
    # operations may not; finance may
    otp_force_login(client, make_staff("ops", role="operations"))
    act(client, "settle_as_reported", [d.pk])
    assert Discrepancy.objects.get(pk=d.pk).status == "open" and journals("recon_settle:") == 0
    otp_force_login(client, finance())
    act(client, "settle_as_reported", [d.pk])
    d.refresh_from_db()
    assert d.status == "resolved" and d.adjustment_reference == f"recon_settle:{d.pk}" and d.resolved_by == "fin"
    assert asset(Accounts.bank_cash("EUR")) - bank == 795
    assert asset(Accounts.psp_fee_expense("EUR")) - fees == 35
    assert asset(Accounts.reconciliation_differences("EUR")) == -100  # a credit: the PSP paid 1.00 more
    assert journal_get(reference=d.adjustment_reference).kind == "settlement"
    ties_out()
    assert receivable_aging(psp="alpha") == []
    # a retry posts once
    with pytest.raises(DiscrepancyStateError):
        discrepancy_settle_as_reported(discrepancy_id=d.pk, user=finance("fin2"), reason="again")
    assert journals("recon_settle:") == 1


def test_a_line_payera_does_not_know_settled_as_reported_goes_to_suspense(client, a_day_of_payments):
    def unknown(i, cols):  # the 730 capture's row, but naming an attempt and operations Payera does not have
        if i == 2:
            cols[3], cols[4], cols[5], cols[6] = "auth_UNKNOWN", "att_nothere", "op_UNKNOWN", ""

    run = alpha_day(unknown, keep=(0, 1, 2, 3))
    d = run.discrepancies.get(kind="missing_in_payera")
    missing = run.discrepancies.get(kind="missing_at_psp")  # the 730 itself is now missing at the PSP
    bank = asset(Accounts.bank_cash("EUR"))
    otp_force_login(client, finance())
    act(client, "settle_as_reported", [d.pk])
    d.refresh_from_db()
    assert d.status == "resolved" and d.receivable_cleared == 0
    assert asset(Accounts.bank_cash("EUR")) - bank == 695  # 730 - 35
    assert asset(Accounts.suspense("EUR")) == -730  # an unidentified receipt until explained
    ties_out()  # the receivable is untouched: the 730 capture is still owed (and aging)
    assert [a["amount"] for a in receivable_aging(psp="alpha")] == [730]
    # a missing-at-PSP item has no line to settle
    with pytest.raises(DiscrepancyMoneyError, match="settled as reported"):
        discrepancy_settle_as_reported(discrepancy_id=missing.pk, user=finance("fin2"), reason="a refusal")


def test_writing_off_what_the_psp_will_never_pay_is_a_loss_and_leaves_the_aging(client, a_day_of_payments):
    run = alpha_day(keep=(0, 2, 3))  # the 2,500 capture is missing at the PSP
    d = run.discrepancies.get(kind="missing_at_psp")
    assert [a["amount"] for a in receivable_aging(psp="alpha")] == [2_500]
    otp_force_login(client, make_staff("ops", role="operations"))
    act(client, "write_off", [d.pk])
    assert Discrepancy.objects.get(pk=d.pk).status == "open" and journals("recon_write_off:") == 0
    otp_force_login(client, finance())
    act(client, "write_off", [d.pk])
    d.refresh_from_db()
    assert d.status == "written_off" and d.adjustment_reference == f"recon_write_off:{d.pk}"
    assert (d.receivable_cleared, d.cleared_currency) == (2_500, "EUR")
    assert asset(Accounts.reconciliation_differences("EUR")) == 2_500  # the loss
    assert journal_get(reference=d.adjustment_reference).kind == "adjustment"
    ties_out()
    assert receivable_aging(psp="alpha") == []
    export = client.post(DSC, {"action": "export_csv", "_selected_action": [d.pk]}).content.decode()
    row = next(csv.DictReader(io.StringIO(export)))
    assert (row["receivable_cleared"], row["cleared_currency"], row["adjustment_reference"]) == (
        "2500", "EUR", d.adjustment_reference)
    with pytest.raises(DiscrepancyStateError):  # a retry posts once
        discrepancy_write_off(discrepancy_id=d.pk, user=finance("fin2"), reason="again")
    assert journals("recon_write_off:") == 1


def test_a_report_line_is_written_off_without_money(client, a_day_of_payments):
    def unknown(i, cols):
        if i == 1:
            cols[3], cols[4], cols[5], cols[6] = "auth_UNKNOWN", "att_nothere", "op_UNKNOWN", ""

    run = alpha_day(unknown)
    d = run.discrepancies.get(kind="missing_in_payera")
    discrepancy_write_off(discrepancy_id=d.pk, user=finance(), reason="a PSP test row, never paid")
    d.refresh_from_db()
    assert d.status == "written_off" and d.adjustment_reference == "" and d.receivable_cleared == 0
    assert journals("recon_") == 0
    # an adjustment has nothing to take off a line Payera does not know
    def paid_again(i, cols):  # the same row again, in another payout: paid twice, a duplicate
        unknown(i, cols)
        cols[2] += "-again"

    other = alpha_day(paid_again, keep=(1,))
    dup = other.discrepancies.get(kind="duplicate")
    with pytest.raises(DiscrepancyMoneyError, match="nothing to take off"):
        discrepancy_resolve(discrepancy_id=dup.pk, user=finance("fin2"), reason="a refusal", adjustment=100)


def test_the_run_page_sums_each_currency_apart(client, day):
    from payments.services import payment_create
    from tests.merchants.factories import MerchantFactory

    merchant = MerchantFactory(connectors=["alpha"])
    payment_create(merchant=merchant, amount=1_000, currency="EUR", payment_method_data=CARD)
    payment_create(merchant=merchant, amount=500_000, currency="JPY", payment_method_data=CARD)
    settle_pending()
    assert Capture.objects.filter(status="succeeded").count() == 2
    lines = report("alpha").decode().splitlines()
    out = []
    for line in lines[1:-1]:  # each settled 1 minor unit more than captured
        cols = line.split(",")
        cols[GROSS], cols[NET] = str(int(cols[GROSS]) + 1), str(int(cols[NET]) + 1)
        out.append(",".join(cols))
    raw = "\n".join([lines[0], *out, lines[-1]]) + "\n"
    run_id = reconcile_import(psp="alpha", raw=raw.encode()).run_id
    otp_force_login(client, make_staff("root", superuser=True))
    page = client.get(f"{RUNS}{quote(run_id)}/change/").content.decode()
    assert "unexplained 0.01 EUR, 1 JPY" in page
    assert "10.01 EUR, 500001 JPY" in page  # the amount mismatches' gross, each currency apart
    assert "5010.02" not in page and "0.02 EUR" not in page


def test_finance_of_another_merchant_is_refused_by_the_services_themselves(a_day_of_payments):
    """What was wrong: `discrepancy_investigate`, `discrepancy_resolve`, `discrepancy_settle_as_reported`
    and `discrepancy_write_off` checked the permission only; the merchant a discrepancy belongs to was
    checked by the admin action alone (its queryset, `merchant_access_check`), unlike
    `suspense_reallocate` and `discrepancy_recheck`, whose services check it too. Any other caller (a
    command, a task, a future API) let finance of one merchant write off or adjust another merchant's
    receivable. What holds now: each service refuses a discrepancy of a merchant the staff member may
    not see (DiscrepancyPermissionError), nothing posted; finance of its merchant goes on."""
    from functools import partial

    from payera.staff.access import staff_grant_merchant
    from reconciliation.errors import DiscrepancyPermissionError
    from reconciliation.services import discrepancy_investigate

    alpha_merchant, beta_merchant = a_day_of_payments
    alpha_day(keep=(0, 2, 3))  # the 2,500 capture is missing at the PSP
    d = Discrepancy.objects.get(kind="missing_at_psp")
    assert d.merchant_id == alpha_merchant.id and d.payera_amount == 2_500
    elsewhere = make_staff("fin_elsewhere", role="finance")
    staff_grant_merchant(user=elsewhere, merchant_id=beta_merchant.id)
    calls = (discrepancy_investigate, discrepancy_write_off, discrepancy_settle_as_reported,
             partial(discrepancy_resolve, adjustment=2_500, currency="EUR"))  # fmt: skip
    for call in calls:
        with pytest.raises(DiscrepancyPermissionError):
            call(discrepancy_id=d.pk, user=elsewhere, reason="not my merchant")
    d.refresh_from_db()
    assert d.status == "open" and not d.adjustment_reference
    assert not Journal.objects.filter(kind="adjustment").exists()

    own = make_staff("fin_own", role="finance")
    staff_grant_merchant(user=own, merchant_id=alpha_merchant.id)
    discrepancy_write_off(discrepancy_id=d.pk, user=own, reason="the PSP will never pay it")
    d.refresh_from_db()
    assert d.status == "written_off" and d.adjustment_reference == f"recon_write_off:{d.pk}"
    ties_out()
