"""An outage answered before any work (503) releases the Idempotency-Key: the retry with it runs.

What was wrong (found in review): only a 400 released the key; a 503 `secrets_unavailable` given
before anything was done was stored and replayed for 24 hours, and on the sensitive path (webhook
endpoints) the key even kept a 409 placeholder saying the request "was processed". Now a 503 given
before the request's work began (payera.core.work) releases the key, as a 400 does.

CONTRACT "Requests": "a request rejected by validation (400) is not stored ... any answer after
work began (including a 5xx) is stored and replayed"; docs/api.md "Errors": a 503 means retry with
the same key (`service_unavailable` is deliberately not stored for that reason). A POST /v1/payments
that meets the secrets backend down tokenizes nothing, writes nothing and calls no PSP — and yet its
503 `secrets_unavailable` is stored, so every retry with the same key replays the 503 for 24 hours:
the payment can never be made under the key the merchant was told to retry with."""

from __future__ import annotations

import json

import pytest

from payera.idempotency.models import IdempotencyKey
from payments.models import Payment, PaymentMethod
from tests.helpers import free_port

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def test_a_503_secrets_unavailable_before_any_work_is_not_replayed(make_merchant_client, psp_settings, settings):
    merchant, client = make_merchant_client(connectors=["alpha"])
    body = json.dumps({"amount": 1000, "currency": "EUR", "payment_method_data": CARD})
    saved = (settings.SECRETS_BACKEND, settings.VAULT_ADDR, settings.VAULT_TOKEN)
    # a real Vault backend whose server is down (nobody listens on the port)
    settings.SECRETS_BACKEND, settings.VAULT_ADDR, settings.VAULT_TOKEN = (
        "vault",
        f"http://127.0.0.1:{free_port()}",
        "s.unreachable",
    )
    first = client.post("/v1/payments", data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-503")
    assert first.status_code == 503, first.content
    assert first.json()["error"]["code"] == "secrets_unavailable"
    assert not Payment.objects.filter(merchant=merchant).exists()  # nothing was done
    assert not PaymentMethod.objects.filter(merchant=merchant).exists()

    settings.SECRETS_BACKEND, settings.VAULT_ADDR, settings.VAULT_TOKEN = saved  # the outage is over
    retry = client.post("/v1/payments", data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-503")
    assert retry.get("Idempotent-Replayed") != "true", (
        "the 503 of a request that did nothing was stored and is replayed: "
        f"{IdempotencyKey.objects.filter(merchant=merchant, key='k-503').values_list('response_status', flat=True)[0]}"
    )
    assert retry.status_code == 201, retry.content
    assert retry.json()["status"] == "succeeded"


def test_a_webhook_endpoint_not_created_for_want_of_secrets_is_not_replayed_as_processed(
    make_merchant_client, settings
):
    """Sharper on the sensitive path: the 503 is stored through `idempotency_end(sensitive=True)`,
    whose encryption fails for the same outage, so the key keeps a 409 placeholder saying the
    request "was processed, but its answer can not be shown again" — for an endpoint that was
    never created. The merchant can never create it under that key, and is told it exists."""
    from payera.events.models import WebhookEndpoint

    merchant, client = make_merchant_client()
    body = json.dumps({"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]})
    saved = (settings.SECRETS_BACKEND, settings.VAULT_ADDR, settings.VAULT_TOKEN)
    settings.SECRETS_BACKEND, settings.VAULT_ADDR, settings.VAULT_TOKEN = (
        "vault",
        f"http://127.0.0.1:{free_port()}",
        "s.unreachable",
    )
    first = client.post("/v1/webhook_endpoints", data=body, content_type="application/json",
                        HTTP_IDEMPOTENCY_KEY="we-503")  # fmt: skip
    assert first.status_code == 503, first.content
    assert not WebhookEndpoint.objects.filter(merchant_id=merchant.id).exists()  # nothing was done

    settings.SECRETS_BACKEND, settings.VAULT_ADDR, settings.VAULT_TOKEN = saved
    retry = client.post("/v1/webhook_endpoints", data=body, content_type="application/json",
                        HTTP_IDEMPOTENCY_KEY="we-503")  # fmt: skip
    assert retry.status_code == 201, (retry.status_code, retry.content)
    assert retry.json()["secret"].startswith("whsec_")
    assert WebhookEndpoint.objects.filter(merchant_id=merchant.id).count() == 1
