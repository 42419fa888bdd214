"""Customers API: create, retrieve, list (contract shapes)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from payments.models import Customer
from payments.services import customer_create

pytestmark = pytest.mark.django_db

URL = "/v1/customers"


def test_create_customer_answers_the_customer_object(merchant_client, merchant):
    before = int(timezone.now().timestamp())
    response = merchant_client.post(
        URL, {"email": "ada@example.com", "name": "Ada", "metadata": {"crm_id": "42"}}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "object", "email", "name", "metadata", "created"}
    assert body["id"].startswith("cus_")
    assert body["object"] == "customer"
    assert (body["email"], body["name"], body["metadata"]) == ("ada@example.com", "Ada", {"crm_id": "42"})
    assert body["created"] >= before
    assert Customer.objects.get(pk=body["id"]).merchant == merchant


def test_an_empty_customer_is_allowed(merchant_client):
    body = merchant_client.post(URL, {}, format="json").json()
    assert (body["email"], body["name"], body["metadata"]) == (None, None, {})


@pytest.mark.parametrize(
    "payload, param",
    [
        ({"email": "nope"}, "email"),
        ({"metadata": "x"}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata[k]"),
        ({"metadata": {"k": {"nested": "x"}}}, "metadata[k]"),
        ({"metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
        ({"metadata": {"k" * 41: "v"}}, "metadata"),
        ({"name": "x" * 257}, "name"),
    ],
)
def test_invalid_input_is_400_and_creates_nothing(merchant_client, merchant, payload, param):
    response = merchant_client.post(URL, payload, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert not Customer.objects.filter(merchant=merchant).exists()


def test_fifty_metadata_keys_are_allowed(merchant_client):
    response = merchant_client.post(URL, {"metadata": {f"k{i}": "v" for i in range(50)}}, format="json")
    assert response.status_code == 201


def test_a_body_that_is_not_json_is_400(merchant_client):
    response = merchant_client.post(URL, data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_retrieve_customer(merchant_client, merchant):
    customer = customer_create(merchant=merchant, email="a@example.com")
    response = merchant_client.get(f"{URL}/{customer.id}")
    assert response.status_code == 200
    assert response.json()["id"] == customer.id


def test_unknown_customer_is_404(merchant_client):
    response = merchant_client.get(f"{URL}/cus_doesnotexist")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "message": "No such customer.",
    }


def test_list_is_newest_first_and_paginates_with_starting_after(merchant_client, merchant):
    now = timezone.now()
    ids = []
    for i in range(5):
        c = customer_create(merchant=merchant, name=f"c{i}")
        Customer.objects.filter(pk=c.pk).update(created_at=now - dt.timedelta(minutes=10 - i))
        ids.append(c.id)
    newest_first = list(reversed(ids))
    page1 = merchant_client.get(URL, {"limit": 2}).json()
    assert page1["object"] == "list" and page1["has_more"] is True
    assert [c["id"] for c in page1["data"]] == newest_first[:2]
    page2 = merchant_client.get(URL, {"limit": 2, "starting_after": newest_first[1]}).json()
    assert [c["id"] for c in page2["data"]] == newest_first[2:4]
    page3 = merchant_client.get(URL, {"limit": 2, "starting_after": newest_first[3]}).json()
    assert [c["id"] for c in page3["data"]] == newest_first[4:]
    assert page3["has_more"] is False
    default = merchant_client.get(URL).json()
    assert len(default["data"]) == 5


@pytest.mark.parametrize("limit", ["0", "101", "abc"])
def test_list_limit_outside_1_to_100_is_400(merchant_client, limit):
    response = merchant_client.get(URL, {"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


def test_customers_are_in_the_openapi_schema(api_client):
    schema = api_client.get("/v1/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/v1/customers/{id}" in text
    assert "Idempotency-Key" in text
    assert "bearer" in text.lower()


@pytest.mark.django_db
def test_customer_changes_are_in_the_audit_trail_with_the_api_key(merchant_client, api_key, merchant):
    from auditlog import get_logentry_model

    created = merchant_client.post("/v1/customers", {"email": "a@example.com", "name": "Ann"}, format="json").json()
    entry = get_logentry_model().objects.get(object_pk=created["id"])
    assert entry.action == entry.Action.CREATE
    assert entry.changes_dict["email"] == ["None", "a@example.com"]
    assert entry.api_key_id == api_key.api_key.id and entry.request_id.startswith("req_")
    assert entry.object_merchant_id == merchant.id
