"""Regression tests for what the API fuzzer found (tests/reliability/test_api_fuzz.py)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.django_db


def test_nul_in_query_string_is_400_not_500(merchant_client):
    # Found: GET /v1/events?type=%00 reached PostgreSQL (text cannot hold NUL) -> DataError -> 500.
    response = merchant_client.get("/v1/events?type=%00%000")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_nul_in_query_key_is_400(merchant_client):
    response = merchant_client.get("/v1/events?a%00b=1")
    assert response.status_code == 400


def test_nul_in_json_body_is_400_not_500(merchant_client):
    body = json.dumps({"url": "https://example.com/hook", "enabled_events": ["*"], "description": "a\u0000b"})
    response = merchant_client.post("/v1/webhook_endpoints", data=body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "parameter_invalid"


def test_nul_in_json_key_is_400(merchant_client):
    response = merchant_client.post("/v1/customers", data='{"na\\u0000me": "x"}', content_type="application/json")
    assert response.status_code == 400


def test_invalid_json_keeps_its_code(merchant_client):
    response = merchant_client.post("/v1/customers", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_healthz_answer_matches_its_schema(client):
    # Found: /healthz was documented with a required "checks" object it never sends.
    from tests.reliability.fuzz import load_schema

    operation = load_schema()["/healthz"]["GET"]
    response = client.get("/healthz")
    assert response.status_code == 200
    schema = operation.definition.raw["responses"]["200"]["content"]["application/json"]["schema"]
    resolved = load_schema().raw_schema["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert set(resolved.get("required", [])) <= set(response.json())


def test_every_operation_documents_the_error_shape():
    # Found: no operation documented its 400/401/404/429 answers, so every error was a schema
    # violation for clients and the fuzzer.
    from tests.reliability.fuzz import load_schema

    raw = load_schema().raw_schema
    assert "Error" in raw["components"]["schemas"]
    for path, item in raw["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            assert "400" in operation["responses"] and "500" in operation["responses"], (method, path)
            if path.startswith("/v1/"):
                assert {"401", "429"} <= set(operation["responses"]), (method, path)


def _raw_schema() -> dict:
    from tests.reliability.fuzz import load_schema

    return load_schema().raw_schema


def test_list_limit_is_documented_as_1_to_100():
    # Found (negative-data probes): `limit` was a bare integer in the schema; 0 or 101 is a 400.
    for path, item in _raw_schema()["paths"].items():
        for operation in item.values():
            for param in operation.get("parameters", []):
                if param["in"] == "query" and param["name"] == "limit":
                    assert (param["schema"]["minimum"], param["schema"]["maximum"]) == (1, 100), path


def test_idempotency_key_format_is_documented():
    # Found: an empty or non-printable Idempotency-Key was schema-valid but answered 400.
    post = _raw_schema()["paths"]["/v1/customers"]["post"]
    header = next(p for p in post["parameters"] if p["in"] == "header" and p["name"] == "Idempotency-Key")
    assert header["schema"]["minLength"] == 1 and header["schema"]["maxLength"] == 255
    assert "pattern" in header["schema"]


def test_enabled_events_may_not_be_empty_in_the_schema():
    # Found: an empty enabled_events list was schema-valid but answered 400.
    raw = _raw_schema()
    body = raw["paths"]["/v1/webhook_endpoints"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    component = raw["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert component["properties"]["enabled_events"]["minItems"] == 1


def test_body_over_the_limit_with_an_idempotency_key_is_413_too(merchant_client, settings):
    body = json.dumps({"name": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    response = merchant_client.post(
        "/v1/customers", data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="big-body-1"
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_every_merchant_operation_documents_404():
    # Found: POST /v1/refunds with an unknown `payment` answers 404 (as the contract says for
    # ids of other merchants' objects) but only path-parameter operations documented a 404.
    for path, item in _raw_schema()["paths"].items():
        for method, operation in item.items():
            if path.startswith("/v1/") and method in {"get", "post", "delete"}:
                assert "404" in operation["responses"], (method, path)


@pytest.mark.parametrize("path", ["/v1/customers", "/v1/events", "/v1/payments", "/v1/balance_transactions"])
def test_empty_limit_is_400_as_the_schema_says(merchant_client, path):
    # Found: `?limit=` was taken as the default although the schema says an integer 1-100.
    response = merchant_client.get(f"{path}?limit=")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"
    assert merchant_client.get(path).status_code == 200  # absent: the default


@pytest.mark.parametrize("body", [
    '{"name": "x", "metadata": {"k": "x\\ud800"}}',  # a lone surrogate in a value
    '{"name": "x", "metadata": {"k\\udfff": "v"}}',  # ... in a key
])
def test_a_lone_surrogate_in_a_json_body_is_400_not_500(merchant_client, body):
    """Found in session 16 (h16a): JSON's `"\\ud800"` escape reads as half of a UTF-16 pair, which
    PostgreSQL (and UTF-8) can not store; the parser refused only NUL, so POST /v1/customers with
    such metadata answered 500. Nothing is stored."""
    from payments.models import Customer

    response = merchant_client.post("/v1/customers", data=body, content_type="application/json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "parameter_invalid"
    assert not Customer.objects.exists()


def test_a_surrogate_pair_in_a_json_body_is_kept(merchant_client):
    """An escaped pair is one character (an emoji): accepted and answered as sent."""
    response = merchant_client.post("/v1/customers", data='{"name": "x", "metadata": {"k": "\\ud83d\\ude00"}}',
                                    content_type="application/json")
    assert response.status_code == 200 or response.status_code == 201, response.content
    assert response.json()["metadata"] == {"k": "\U0001f600"}
