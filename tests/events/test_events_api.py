"""The merchant API over events and webhook endpoints (CONTRACT "Webhooks to merchants")."""

import hashlib
import hmac
import json

import pytest
from django.db import transaction

from payera.events.models import WebhookEndpoint
from payera.events.services import event_record

pytestmark = pytest.mark.django_db


def test_create_endpoint_shows_the_secret_once_and_stores_it_encrypted(merchant_client):
    response = merchant_client.post(
        "/v1/webhook_endpoints",
        {"url": "http://127.0.0.1:9/hook", "enabled_events": ["payment.*"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="we-1",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["object"] == "webhook_endpoint" and body["id"].startswith("we_")
    assert body["secret"].startswith("whsec_") and body["enabled_events"] == ["payment.*"]
    stored = WebhookEndpoint.objects.get(pk=body["id"])
    assert body["secret"] not in stored.secret_ciphertext
    detail = merchant_client.get(f"/v1/webhook_endpoints/{body['id']}").json()
    assert "secret" not in detail and detail["url"] == "http://127.0.0.1:9/hook"
    # A replay of the create answers the same secret again (stored encrypted), and creates nothing.
    replay = merchant_client.post(
        "/v1/webhook_endpoints",
        {"url": "http://127.0.0.1:9/hook", "enabled_events": ["payment.*"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="we-1",
    )
    assert replay["Idempotent-Replayed"] == "true" and replay.json() == body
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"enabled_events": ["*"]}, "url"),
        ({"url": "ftp://example.com/x", "enabled_events": ["*"]}, "url"),
        ({"url": "http://127.0.0.1:9/hook", "enabled_events": []}, "enabled_events"),
    ],
)
def test_bad_endpoint_is_400_with_param(merchant_client, payload, param):
    response = merchant_client.post("/v1/webhook_endpoints", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_roll_secret_answers_a_new_secret_and_the_old_keeps_signing(merchant_client):
    created = merchant_client.post(
        "/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/h", "enabled_events": ["*"]}, format="json"
    ).json()
    rolled = merchant_client.post(
        f"/v1/webhook_endpoints/{created['id']}/roll_secret", {"overlap_hours": 1}, format="json"
    )
    assert rolled.status_code == 200
    assert rolled.json()["secret"] != created["secret"]
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    assert endpoint.previous_secret_ciphertext and endpoint.previous_secret_expires_at


def test_update_and_delete_endpoint(merchant_client):
    created = merchant_client.post(
        "/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/h", "enabled_events": ["*"]}, format="json"
    ).json()
    updated = merchant_client.post(f"/v1/webhook_endpoints/{created['id']}", {"status": "disabled"}, format="json")
    assert updated.status_code == 200 and updated.json()["status"] == "disabled"
    deleted = merchant_client.delete(f"/v1/webhook_endpoints/{created['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert merchant_client.get(f"/v1/webhook_endpoints/{created['id']}").status_code == 404


def test_events_list_and_detail(merchant_client, merchant):
    with transaction.atomic():
        first = event_record(
            merchant_id=merchant.id, type="payout.created", data={"id": "cus_1", "object": "customer"}
        )
        second = event_record(
            merchant_id=merchant.id, type="payment.succeeded", data={"id": "pay_1", "object": "payment"}
        )
    listed = merchant_client.get("/v1/events").json()
    assert [e["id"] for e in listed["data"]][:2] == [second.id, first.id]
    only = merchant_client.get("/v1/events", {"type": "payout.created"}).json()
    assert [e["id"] for e in only["data"]] == [first.id]
    detail = merchant_client.get(f"/v1/events/{second.id}").json()
    assert detail == {
        "id": second.id,
        "object": "event",
        "type": "payment.succeeded",
        "created": detail["created"],
        "data": {"object": {"id": "pay_1", "object": "payment"}},
        **{k: v for k, v in detail.items() if k not in {"id", "object", "type", "created", "data"}},
    }


def test_signature_helper_matches_the_contract_formula():
    from payera.events.signing import sign

    body = json.dumps({"id": "evt_1"}).encode()
    header = sign("whsec_abc", 1700000000, body)
    expected = hmac.new(b"whsec_abc", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
