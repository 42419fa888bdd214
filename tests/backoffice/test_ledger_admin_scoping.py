"""The ledger admin is limited to the staff member's merchants like every other page: finance
limited to merchant A does not see merchant B's accounts, balances, journals or entries, by list,
search or URL; staff without a merchant grant see none; who sees every merchant sees all."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote

from ledger.models import Account, Entry, Journal
from tests.backoffice.payments import APPROVED, pay
from tests.backoffice.staff import make_staff, otp_force_login

pytestmark = pytest.mark.django_db

ACCOUNTS, JOURNALS, ENTRIES = "/admin/ledger/account/", "/admin/ledger/journal/", "/admin/ledger/entry/"


def shown(page) -> set[str]:
    assert page.status_code == 200
    return {str(obj.pk) for obj in page.context["cl"].result_list}


@pytest.fixture
def books(psp_settings, world):
    """Each merchant's rows of the ledger, after one captured payment each."""
    for name in ("A", "B"):
        pay(world[name].merchant, amount=1000 if name == "A" else 777, number=APPROVED, connectors=["alpha"])
    out = {}
    for name in ("A", "B"):
        owner = world[name].merchant.pk
        accounts = {str(pk) for pk in Account.objects.filter(owner=owner).values_list("pk", flat=True)}
        entries = {str(pk) for pk in Entry.objects.filter(account__owner=owner).values_list("pk", flat=True)}
        journals = {
            str(pk) for pk in Journal.objects.filter(entries__account__owner=owner).values_list("pk", flat=True)
        }
        assert accounts and entries and journals
        out[name] = {ACCOUNTS: accounts, ENTRIES: entries, JOURNALS: journals}
    return out


def test_finance_limited_to_merchant_a_sees_only_a_in_the_ledger(client, role_users, world, books):
    otp_force_login(client, role_users["finance"])  # merchant A only
    for url in (ACCOUNTS, ENTRIES, JOURNALS):
        seen = shown(client.get(url))
        assert books["A"][url] <= seen, url
        assert not books["B"][url] & seen, f"{url} shows merchant B's rows"
    assert not shown(client.get(ACCOUNTS, {"q": world["B"].merchant.pk}))
    for url in (ACCOUNTS, ENTRIES, JOURNALS):
        b_row = sorted(books["B"][url])[0]
        assert client.get(f"{url}{quote(b_row)}/change/").status_code in (302, 403, 404), f"{url} {b_row} by URL"
        a_row = sorted(books["A"][url])[0]
        assert client.get(f"{url}{quote(a_row)}/change/").status_code == 200, f"{url} {a_row}"


def test_ledger_admin_without_a_merchant_grant_shows_nothing_and_all_merchants_shows_all(client, role_users, books):
    otp_force_login(client, make_staff("fin-nogrant", role="finance"))
    for url in (ACCOUNTS, ENTRIES, JOURNALS):
        assert shown(client.get(url)) == set(), url
    otp_force_login(client, role_users["admin"])
    for url in (ACCOUNTS, ENTRIES, JOURNALS):
        assert books["A"][url] | books["B"][url] <= shown(client.get(url)), url


def test_a_scoped_journal_page_shows_only_the_merchants_legs_and_no_platform_running_totals(
    client, role_users, world, books
):
    """The fee journal of A's payment also credits the platform's fee revenue, whose balance after
    is a running total over every merchant (B's fees in it): finance limited to A sees A's legs only.
    Who sees every merchant sees every leg."""
    journal = next(j for j in sorted(books["A"][JOURNALS]) if Entry.objects.filter(
        journal_id=j).exclude(account__owner=world["A"].merchant.pk).exists())  # fmt: skip
    otp_force_login(client, role_users["finance"])  # merchant A only
    page = client.get(f"{JOURNALS}{quote(journal)}/change/")
    assert page.status_code == 200
    [formset] = [f for f in page.context["inline_admin_formsets"]]
    legs = {form.original.account.owner for form in formset}
    assert legs == {world["A"].merchant.pk}
    otp_force_login(client, role_users["admin"])
    page = client.get(f"{JOURNALS}{quote(journal)}/change/")
    [formset] = [f for f in page.context["inline_admin_formsets"]]
    assert {form.original.account.owner for form in formset} > {world["A"].merchant.pk}


def test_the_journal_and_entry_lists_count_no_further_than_the_cap_and_list_kinds_without_a_scan(
    client, role_users, books
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    otp_force_login(client, role_users["finance"])
    for url in (JOURNALS, ENTRIES):
        with CaptureQueriesContext(connection) as queries:
            page = client.get(url)
        assert page.status_code == 200
        sql = " ".join(q["sql"] for q in queries.captured_queries)
        assert "LIMIT 1001" in sql, url  # the capped count, not COUNT(*) of the whole filter
        assert "DISTINCT" not in sql.upper() or url == ENTRIES, url
    assert "capture" in client.get(JOURNALS).content.decode()  # the kind filter lists the kinds
    assert shown(client.get(JOURNALS, {"kind": "capture"})) <= books["A"][JOURNALS]
