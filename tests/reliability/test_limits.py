"""The request size limit holds for JSON API bodies and answers 413 in the contract's error shape.

Found here: a body over DATA_UPLOAD_MAX_MEMORY_SIZE raised RequestDataTooBig inside DRF's
parsing and answered 500. (The 429 rate limit is covered by tests/merchants/test_api_key_auth.py.)
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings as django_settings

pytestmark = pytest.mark.django_db


def test_upload_limit_is_set():
    assert django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 1024 * 1024


@pytest.mark.parametrize("path", ["/v1/customers", "/v1/webhook_endpoints"])
def test_json_body_over_the_limit_is_413_in_the_error_shape(merchant_client, path):
    body = json.dumps({"description": "x" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    response = merchant_client.post(path, data=body, content_type="application/json")
    assert response.status_code == 413, response.content[:300]
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "request_too_large"


def test_body_just_under_the_limit_is_not_refused_for_size(merchant_client):
    body = json.dumps({"name": "x" * 1000, "metadata": {"k": "v" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 2)}})
    response = merchant_client.post("/v1/customers", data=body, content_type="application/json")
    assert response.status_code != 413
    assert response.status_code < 500
