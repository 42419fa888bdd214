"""GET /v1/balance and /v1/balance_transactions show the authenticated merchant's ledger only, and a
cursor from another merchant's list is refused (docs/api.md "Pagination", CONTRACT "Lists")."""

import uuid

import pytest

from ledger import services
from ledger.types import Accounts, PostingLine


def _capture(merchant_id: str, now, amount: int, currency: str = "EUR") -> None:
    services.journal_post(
        reference=f"capture:{uuid.uuid4().hex}",
        kind="capture",
        lines=(
            PostingLine.debit(Accounts.psp_receivable("alpha", currency), amount),
            PostingLine.credit(Accounts.merchant_pending(merchant_id, currency), amount),
        ),
        occurred_at=now,
    )


def _settle(merchant_id: str, now, amount: int) -> None:
    services.journal_post(
        reference=f"settle:{uuid.uuid4().hex}",
        kind="settlement",
        lines=(
            PostingLine.debit(Accounts.merchant_pending(merchant_id, "EUR"), amount),
            PostingLine.credit(Accounts.merchant_available(merchant_id, "EUR"), amount),
        ),
        occurred_at=now,
    )


@pytest.fixture
def two_merchants(make_merchant_client, now):
    a, client_a = make_merchant_client()
    b, client_b = make_merchant_client()
    _capture(a.id, now, 1000)
    _capture(a.id, now, 250, "USD")
    _settle(a.id, now, 400)
    return client_a, client_b


@pytest.mark.django_db
def test_balance_is_the_callers_own(two_merchants):
    client_a, client_b = two_merchants
    mine = client_a.get("/v1/balance").json()
    assert mine["pending"] == [{"amount": 600, "currency": "EUR"}, {"amount": 250, "currency": "USD"}]
    assert mine["available"] == [{"amount": 400, "currency": "EUR"}]
    theirs = client_b.get("/v1/balance")
    assert theirs.status_code == 200
    assert theirs.json() == {"object": "balance", "pending": [], "available": [], "escrow": []}


@pytest.mark.django_db
def test_balance_transactions_are_the_callers_own(two_merchants):
    client_a, client_b = two_merchants
    mine = client_a.get("/v1/balance_transactions?limit=100").json()
    assert len(mine["data"]) == 4  # capture EUR, capture USD, settlement out of pending and into available
    theirs = client_b.get("/v1/balance_transactions?limit=100").json()
    assert theirs == {"object": "list", "data": [], "has_more": False}


@pytest.mark.django_db
def test_another_merchants_transaction_is_no_cursor(two_merchants):
    client_a, client_b = two_merchants
    first, second = client_a.get("/v1/balance_transactions?limit=2").json()["data"]
    # A pages on with its own cursor
    page = client_a.get(f"/v1/balance_transactions?limit=100&starting_after={second['id']}").json()
    assert [t["id"] for t in page["data"]] and second["id"] not in [t["id"] for t in page["data"]]
    # B may not use A's transaction as a cursor: 400 as for an unknown id, nothing of A's shown
    for cursor in (first["id"], second["id"], "txn_999999999999", "txn_x"):
        response = client_b.get(f"/v1/balance_transactions?starting_after={cursor}")
        assert response.status_code == 400, cursor
        error = response.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", "starting_after")
        assert "amount" not in response.content.decode()


@pytest.mark.django_db
def test_a_balance_transaction_answers_by_id(two_merchants):
    """CONTRACT "Requests": every resource answers GET /v1/<resources>/{id}; before, the list's
    `txn_…` ids had no detail route (404 `Unrecognized request URL` for the caller's own)."""
    client_a, client_b = two_merchants
    listed = client_a.get("/v1/balance_transactions?limit=100").json()["data"]
    for item in listed:
        response = client_a.get(f"/v1/balance_transactions/{item['id']}")
        assert response.status_code == 200, item["id"]
        assert response.json() == item
    # another merchant's id answers exactly like an unknown one
    for txn in (listed[0]["id"], "txn_999999999999", "txn_x", "txn_", "txn_99999999999999999999999", "pay_1"):
        response = client_b.get(f"/v1/balance_transactions/{txn}")
        assert response.status_code == 404, txn
        assert response.json()["error"]["code"] == "resource_missing"
        assert "amount" not in response.content.decode()
