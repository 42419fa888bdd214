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


@pytest.mark.django_db
def test_balance_transaction_ids_are_opaque(two_merchants):
    """docs/decisions/0003-public-ids.md: ids tell neither volume nor order. An entry's `txn_` id is
    24 base62 characters that decrypt to its key under the secrets backend's key; its sequence
    number, or a changed character, names nothing."""
    import re

    from ledger.models import Entry
    from payera.core.ids import opaque_id, opaque_id_key

    client_a, _ = two_merchants
    listed = client_a.get("/v1/balance_transactions?limit=100").json()["data"]
    ids = [t["id"] for t in listed]
    assert len(ids) == 4 and all(re.fullmatch(r"txn_[0-9A-Za-z]{24}", i) for i in ids), ids
    keys = [opaque_id_key("txn", i) for i in ids]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == 4  # newest first, each its entry
    assert all(Entry.objects.filter(id=k).exists() for k in keys)
    # nothing of the sequence shows: ids of neighbouring entries differ almost everywhere (an
    # encrypted block: each of the 24 characters matches by chance with p = 1/62; a counter or an
    # encoding of the key would share most characters). (A test that the key's digits do not occur
    # in the id failed by chance: "7" occurs in a random 24-character id one time in three.)
    for a, b in zip(ids, ids[1:], strict=False):
        assert sum(x == y for x, y in zip(a[4:], b[4:], strict=True)) <= 8, (a, b)
    for guess in (f"txn_{keys[0]}", f"txn_{keys[0]:024d}", ids[0][:-1] + ("A" if ids[0][-1] != "A" else "B")):
        assert opaque_id_key("txn", guess) is None
        assert client_a.get(f"/v1/balance_transactions/{guess}").status_code == 404, guess
    # the same entry, the same id, in every process that reads the same secrets backend
    assert opaque_id("txn", keys[0]) == ids[0] and opaque_id("pay", keys[0]) != ids[0].replace("txn", "pay")
