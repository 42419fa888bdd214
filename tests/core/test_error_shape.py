"""Every error the API answers has the contract's shape, Django's own errors included."""

import pytest

pytestmark = [pytest.mark.urls("tests.core.error_urls"), pytest.mark.django_db]


def assert_error(response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == type_
    assert body["error"]["code"]
    assert body["error"]["message"]
    return body["error"]


def test_validation_error_is_400_with_param(client):
    response = client.post("/_test/validate", {"amount": 0, "currency": "EUR"}, content_type="application/json")
    error = assert_error(response, 400, "invalid_request_error")
    assert error["param"] == "amount"


def test_missing_field_is_400_parameter_missing(client):
    response = client.post("/_test/validate", {"amount": 10}, content_type="application/json")
    error = assert_error(response, 400, "invalid_request_error")
    assert error == {
        "type": "invalid_request_error",
        "code": "parameter_missing",
        "message": "currency: This field is required.",
        "param": "currency",
    }


def test_a_value_too_long_is_400_parameter_invalid_not_drfs_code(client):
    """docs/api.md "Errors": 400 codes are ours; DRF's `max_length` leaked before (a live
    `POST /v1/subscriptions` with `interval: "fortnight"` answered code `max_length`)."""
    response = client.post("/_test/validate", {"amount": 10, "currency": "EURO"}, content_type="application/json")
    error = assert_error(response, 400, "invalid_request_error")
    assert (error["code"], error["param"]) == ("parameter_invalid", "currency")
    response = client.post("/_test/validate", {"amount": 0, "currency": "EUR"}, content_type="application/json")
    assert assert_error(response, 400, "invalid_request_error")["code"] == "parameter_invalid"  # min_value


def test_malformed_json_is_400(client):
    response = client.post("/_test/validate", "{not json", content_type="application/json")
    error = assert_error(response, 400, "invalid_request_error")
    assert error["code"] == "invalid_json"


def test_not_authenticated_is_401(client):
    response = client.get("/_test/auth")
    assert_error(response, 401, "authentication_error")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_unknown_url_is_404_json(client):
    response = client.get("/v1/no-such-thing")
    error = assert_error(response, 404, "invalid_request_error")
    assert error["code"] == "resource_missing"


def test_wrong_method_is_405(client):
    response = client.delete("/healthz")
    error = assert_error(response, 405, "invalid_request_error")
    assert error["code"] == "method_not_allowed"


def test_500_from_sql_error_leaks_no_sql_and_no_secret(client):
    client.raise_request_exception = False
    response = client.get("/_test/crash-sql")
    assert_error(response, 500, "api_error")
    text = response.content.decode()
    for leak in ("SELECT", "table_that_does_not_exist", "sk_test_", "Traceback", "psycopg", ".py"):
        assert leak not in text
    assert response["Request-Id"]


def test_500_from_plain_exception_leaks_nothing(client):
    client.raise_request_exception = False
    response = client.get("/_test/crash")
    assert_error(response, 500, "api_error")
    assert "4242" not in response.content.decode()
    assert "RuntimeError" not in response.content.decode()


def test_500_outside_drf_uses_the_same_shape(client):
    client.raise_request_exception = False
    response = client.get("/_test/django-crash")
    assert_error(response, 500, "api_error")
    assert "sk_test_" not in response.content.decode()
