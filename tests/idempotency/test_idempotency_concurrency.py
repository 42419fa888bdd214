"""Real concurrency on PostgreSQL: 20 threads, each with its own connection, one key."""

from __future__ import annotations

import json
import time

import pytest

from payera.idempotency.models import IdempotencyKey
from payments.api import customers as customers_api
from payments.models import Customer
from tests.conftest import client_for
from tests.helpers import race
from tests.merchants.factories import MerchantFactory, make_api_key

THREADS = 20


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_posts_with_one_key_create_exactly_one_customer(monkeypatch):
    merchant = MerchantFactory()
    secret = make_api_key(merchant).secret
    real_create = customers_api.customer_create
    calls = []

    def slow_create(**kwargs):
        calls.append(1)
        time.sleep(0.3)  # keep the first request in flight while the others arrive
        return real_create(**kwargs)

    monkeypatch.setattr(customers_api, "customer_create", slow_create)
    body = json.dumps({"email": "race@example.com", "metadata": {"cart": "42"}})
    def one_post():
        response = client_for(secret).post(
            "/v1/customers", data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="race-key"
        )
        return response.status_code, response.content, response.get("Idempotent-Replayed")

    results: list[tuple[int, bytes, str | None]] = race(THREADS, one_post)

    assert Customer.objects.filter(merchant=merchant).count() == 1
    assert len(calls) == 1
    created = [r for r in results if r[0] == 201 and r[2] is None]
    assert len(created) == 1
    first_body = created[0][1]
    for status, content, replayed in results:
        if (status, content, replayed) == created[0]:
            continue
        if status == 409:
            assert json.loads(content)["error"]["type"] == "idempotency_error"
        else:
            assert (status, replayed) == (201, "true")
            assert content == first_body
    assert sum(1 for r in results if r[0] == 409) >= 1
    assert IdempotencyKey.objects.filter(merchant=merchant).count() == 1
    # After the race, a repeat is a replay of the one answer.
    replay = client_for(secret).post(
        "/v1/customers", data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="race-key"
    )
    assert replay["Idempotent-Replayed"] == "true" and replay.content == first_body
