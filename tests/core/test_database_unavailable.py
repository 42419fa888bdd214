"""While PostgreSQL is unreachable the API answers 503 `service_unavailable` with Retry-After —
not a 500 — and never a stored answer: the Idempotency-Key stays claimed (or, for POST
/v1/payments whose key is claimed with its work, was never claimed), so the merchant's retry with
the same key runs the request once, after the database is back (found by the load run,
docs/reliability.md)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import OperationalError
from django.utils import timezone

from payera.idempotency.models import IdempotencyKey
from payments.models import Payment
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
BODY = {"amount": 1000, "currency": "EUR", "payment_method_data": CARD}

PROBE = """
import json, os, django
os.environ["DJANGO_SETTINGS_MODULE"] = "payera.settings.base"
django.setup()
from django.test import Client
from payera.merchants.keys import generate_key
r = Client().post("/v1/payments", data=json.dumps(%r), content_type="application/json",
                  HTTP_AUTHORIZATION="Bearer " + generate_key(), HTTP_IDEMPOTENCY_KEY="k-1")
print(json.dumps({"status": r.status_code, "retry_after": r.get("Retry-After"), "body": r.json()}))
"""


def test_a_request_while_the_database_is_unreachable_is_503_with_retry_after():
    """The real app in a subprocess, its database a closed port: nothing is mocked."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), LOG_LEVEL="ERROR",
               DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/test")
    out = subprocess.run([sys.executable, "-c", PROBE % (BODY,)], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 503, result
    assert result["retry_after"] == "5"
    assert result["body"]["error"]["code"] == "service_unavailable"
    assert "127.0.0.1" not in json.dumps(result["body"]) and "connection" not in json.dumps(result["body"])


@pytest.mark.django_db
def test_the_key_stays_claimed_and_the_retry_runs_once_when_the_database_is_back(
    merchant_client, merchant, monkeypatch,
):
    """A key claimed before the work (every POST but POST /v1/payments, below): the database goes
    away after the claim committed."""
    import payments.api.customers as api
    from payments.models import Customer

    real = api.customer_create

    def database_gone(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(api, "customer_create", database_gone)
    body = {"email": "back@example.com"}

    def post():
        return merchant_client.post("/v1/customers", data=json.dumps(body), content_type="application/json",
                                    HTTP_IDEMPOTENCY_KEY="db-gone-1")

    first = post()
    assert first.status_code == 503 and first["Retry-After"] == "5"
    assert "server closed" not in first.content.decode()
    claim = IdempotencyKey.objects.get(key="db-gone-1")
    assert claim.response_status is None  # nothing stored: not a 503 to replay forever
    monkeypatch.setattr(api, "customer_create", real)  # the database is back
    assert post().status_code == 409  # the first try's claim is still in flight
    IdempotencyKey.objects.filter(pk=claim.pk).update(locked_until=timezone.now() - dt.timedelta(seconds=1))
    retry = post()
    assert retry.status_code == 201
    assert Customer.objects.filter(merchant=merchant).count() == 1
    again = post()
    assert again["Idempotent-Replayed"] == "true" and again.json()["id"] == retry.json()["id"]


@pytest.mark.django_db
def test_a_payment_whose_database_went_away_before_its_claim_is_run_once_by_the_retry(
    merchant_client, merchant, psp_settings, monkeypatch,
):
    """POST /v1/payments claims its key in the payment's creating transaction
    (docs/decisions/idempotency-claim-with-work.md): the database gone before it, nothing was
    claimed or stored — no 503 to replay — and the retry, once it is back, runs the payment once."""
    merchant.connectors = ["alpha"]
    merchant.save(update_fields=["connectors"])
    import payments.api.payments as api

    real = api.payment_create

    def database_gone(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(api, "payment_create", database_gone)

    def post():
        return merchant_client.post("/v1/payments", data=json.dumps(BODY), content_type="application/json",
                                    HTTP_IDEMPOTENCY_KEY="db-gone-1")

    first = post()
    assert first.status_code == 503 and first["Retry-After"] == "5"
    assert "server closed" not in first.content.decode()
    assert not IdempotencyKey.objects.filter(key="db-gone-1").exists()
    assert not Payment.objects.filter(merchant=merchant).exists()
    monkeypatch.setattr(api, "payment_create", real)  # the database is back
    retry = post()
    assert retry.status_code == 201 and retry.json()["status"] == "succeeded"
    assert Payment.objects.filter(merchant=merchant).count() == 1
    again = post()
    assert again["Idempotent-Replayed"] == "true" and again.json()["id"] == retry.json()["id"]
