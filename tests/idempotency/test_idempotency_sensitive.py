"""An answer carrying a secret shown once is stored encrypted, and replayed decrypted."""

from __future__ import annotations

import pytest
from django.urls import path
from rest_framework.response import Response

from payera.idempotency.models import IdempotencyKey
from payera.merchants.api.base import MerchantApiView

SECRET = "whsec_thisIsShownOnlyOnce"


class _SecretApi(MerchantApiView):
    idempotency_sensitive = True

    def post(self, request):
        return Response({"object": "thing", "secret": SECRET}, status=201)


urlpatterns = [path("v1/things", _SecretApi.as_view(), name="thing-list")]


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_sensitive_answer_is_encrypted_at_rest_and_replayed(settings, merchant_client, merchant):
    settings.SECRETS_BACKEND = "memory"
    first = merchant_client.post("/v1/things", {}, format="json", HTTP_IDEMPOTENCY_KEY="s1")
    assert first.status_code == 201
    row = IdempotencyKey.objects.get(merchant=merchant)
    assert row.response_encrypted
    assert SECRET.encode() not in bytes(row.response_body)
    again = merchant_client.post("/v1/things", {}, format="json", HTTP_IDEMPOTENCY_KEY="s1")
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_secrets_backend_down_stores_a_placeholder_never_the_secret(monkeypatch, settings, merchant_client, merchant):
    from payera.secrets.backends.base import SecretsUnavailableError

    def down(**kwargs):
        raise SecretsUnavailableError()

    monkeypatch.setattr("payera.secrets.services.encrypt", down)
    first = merchant_client.post("/v1/things", {}, format="json", HTTP_IDEMPOTENCY_KEY="s2")
    assert first.status_code == 201  # the caller still gets its one answer
    row = IdempotencyKey.objects.get(merchant=merchant)
    assert SECRET.encode() not in bytes(row.response_body)
    again = merchant_client.post("/v1/things", {}, format="json", HTTP_IDEMPOTENCY_KEY="s2")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "idempotency_response_unavailable"
