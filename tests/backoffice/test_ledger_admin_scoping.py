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
