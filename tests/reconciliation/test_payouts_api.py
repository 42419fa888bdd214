"""GET /v1/payouts and /v1/payouts/{id}: contract shapes, merchant scoping, no bank account number."""

from __future__ import annotations

import pytest

from reconciliation.services import payout_mark_in_transit, payout_mark_paid
from tests.reconciliation.helpers import BANK_ACCOUNT, make_payout

pytestmark = pytest.mark.django_db


def test_payout_list_and_detail_shapes(make_merchant_client):
    merchant, client = make_merchant_client()
    payout = make_payout(merchant)
    payout_mark_in_transit(payout_id=payout.id)
    payout_mark_paid(payout_id=payout.id)

    listed = client.get("/v1/payouts")
    assert listed.status_code == 200
    body = listed.json()
    assert body["object"] == "list" and body["has_more"] is False and len(body["data"]) == 1
    detail = client.get(f"/v1/payouts/{payout.id}").json()
    assert body["data"][0] == detail
    assert detail["id"].startswith("po_") and detail["object"] == "payout"
    assert detail["amount"] == payout.amount and detail["currency"] == "EUR" and detail["status"] == "paid"
    assert detail["destination"] == {"type": "bank_account", "masked": "DE89…3000"}
    assert isinstance(detail["created"], int) and isinstance(detail["paid_at"], int)
    assert detail["failure_reason"] is None
    for response in (listed, client.get(f"/v1/payouts/{payout.id}")):
        assert BANK_ACCOUNT not in response.content.decode() and "0532013000" not in response.content.decode()


def test_another_merchants_payout_is_404_and_not_listed(make_merchant_client):
    a, client_a = make_merchant_client()
    b, _ = make_merchant_client()
    theirs = make_payout(b)
    mine = make_payout(a)
    response = client_a.get(f"/v1/payouts/{theirs.id}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "resource_missing"
    assert [p["id"] for p in client_a.get("/v1/payouts").json()["data"]] == [mine.id]
    assert client_a.get(f"/v1/payouts?starting_after={theirs.id}").status_code == 400


def test_payout_list_paginates_newest_first(make_merchant_client):
    from datetime import timedelta

    from django.utils import timezone

    merchant, client = make_merchant_client()
    now = timezone.now()
    ids = [make_payout(merchant, now=now + timedelta(days=i)).id for i in range(3)]
    page = client.get("/v1/payouts?limit=2").json()
    assert [p["id"] for p in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    rest = client.get(f"/v1/payouts?limit=2&starting_after={ids[1]}").json()
    assert [p["id"] for p in rest["data"]] == [ids[0]] and rest["has_more"] is False
