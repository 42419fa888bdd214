"""The merchant page of the back office: what an admin types there is checked as
`manage.py create_merchant` checks it (payera.merchants.services)."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote

from payera.merchants.models import Merchant
from tests.backoffice.staff import make_staff, otp_force_login
from tests.merchants.factories import MerchantFactory

pytestmark = pytest.mark.django_db


def form(merchant, **changes) -> dict:
    data = {
        "name": merchant.name,
        "default_currency": merchant.default_currency,
        "settlement_delay_days": merchant.settlement_delay_days,
        "fee_schedule": merchant.fee_schedule,
        "connectors": '["alpha", "beta"]',
        "refund_approval_threshold": merchant.refund_approval_threshold,
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
        "_save": "Save",
    }
    return {**data, **changes}


@pytest.fixture
def page(client):
    otp_force_login(client, make_staff("root", superuser=True))
    merchant = MerchantFactory(name="Shop", connectors=["alpha", "beta"])
    return client, merchant, f"/admin/merchants/merchant/{quote(merchant.pk)}/change/"


def test_the_page_saves_a_valid_change(page):
    client, merchant, url = page
    assert client.post(url, form(merchant, fee_schedule="zero")).status_code == 302
    assert Merchant.objects.get(pk=merchant.pk).fee_schedule == "zero"


def test_an_unknown_fee_schedule_is_refused(page):
    """A mistyped schedule was saved: every capture of the merchant then charged the `standard`
    fees without a word (the fee lookup falls back to it)."""
    client, merchant, url = page
    response = client.post(url, form(merchant, fee_schedule="zer0"))
    assert response.status_code == 200 and b"Unknown fee schedule" in response.content
    assert Merchant.objects.get(pk=merchant.pk).fee_schedule == "standard"


@pytest.mark.parametrize("connectors", ['["gamma"]', "[]", '["alpha", "alpha"]', '"alpha"', "[1]"])
def test_connectors_that_can_not_route_are_refused(page, connectors):
    """A connector list the router can not use (an unknown name, none, a repeat, not a list of
    names) was saved as typed: the merchant's next payments failed or went nowhere."""
    client, merchant, url = page
    response = client.post(url, form(merchant, connectors=connectors))
    assert response.status_code == 200, connectors
    assert Merchant.objects.get(pk=merchant.pk).connectors == ["alpha", "beta"]
