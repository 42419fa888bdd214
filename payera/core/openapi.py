"""Schema post-processing: document the one error shape on every operation.

drf-spectacular documents only the success answers a view declares; every API operation can
also answer the contract's errors (`payera.core.api`). Without them the schema is wrong for
every client generator and for the API fuzzer (tests/reliability): an undocumented 400 is a
schema violation. It also states platform-wide parameter rules (`limit` 1-100, the
`Idempotency-Key` format) that the views' declarations left loose. The hook adds an `Error`
component and, per operation, the error statuses it can give — only where the view did not
document the status itself.
"""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message"],
            "properties": {
                "type": {
                    "type": "string",
                    "enum": [
                        "invalid_request_error",
                        "authentication_error",
                        "permission_error",
                        "idempotency_error",
                        "rate_limit_error",
                        "api_error",
                    ],
                },
                "code": {"type": "string"},
                "message": {"type": "string"},
                "param": {"type": "string"},
            },
        }
    },
}

_DESCRIPTIONS = {
    "400": "Invalid request (`invalid_request_error`).",
    "401": "Unknown, revoked or missing API key (`authentication_error`).",
    "403": "The key may not do this (`permission_error`).",
    "404": "No such object, or not this merchant's (`invalid_request_error`).",
    "405": "Method not allowed (`invalid_request_error`).",
    "409": "The same Idempotency-Key is still being processed (`idempotency_error`).",
    "413": "The request body is too large (`invalid_request_error`).",
    "415": "The body is not JSON (`invalid_request_error`).",
    "422": "The same Idempotency-Key with other parameters (`idempotency_error`).",
    "429": "Too many requests for this API key (`rate_limit_error`).",
    "500": "Internal error (`api_error`); quote the Request-Id header.",
}

_WRITE_METHODS = {"post", "put", "patch", "delete"}


def _error_statuses(method: str, path: str, operation: dict) -> list[str]:
    statuses = ["400", "405", "500"]  # any operation: bad query/body, unknown method, crash
    if operation.get("security") != [{}] and operation.get("security") != []:
        # A merchant operation may name an object in its path or body (`payment`, `customer`,
        # `payment_method`): an unknown or another merchant's id is a 404 (found by the fuzzer
        # on POST /v1/refunds with an unknown `payment`).
        statuses += ["401", "403", "404", "429"]
    elif "{" in path:
        statuses.append("404")
    if method in _WRITE_METHODS:
        statuses += ["413", "415"]
    if method == "post":
        statuses += ["409", "422"]
    return statuses


def _tighten_parameters(operation: dict) -> None:
    """Parameters whose rules are platform-wide, stated as the code enforces them."""
    for param in operation.get("parameters", []):
        schema = param.setdefault("schema", {})
        if param.get("in") == "query" and param.get("name") == "limit":  # payera.core.pagination
            schema.update({"type": "integer", "minimum": 1, "maximum": 100})
        elif param.get("in") == "header" and param.get("name") == "Idempotency-Key":  # payera.core.idempotency
            # 1-255 printable characters (an HTTP header value: printable ASCII here).
            schema.update({"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"})


def add_error_responses(result: dict, generator, request, public) -> dict:
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Error", ERROR_SCHEMA)
    ref = {"$ref": "#/components/schemas/Error"}
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            _tighten_parameters(operation)
            responses = operation.setdefault("responses", {})
            for status in _error_statuses(method, path, operation):
                responses.setdefault(
                    status, {"description": _DESCRIPTIONS[status], "content": {"application/json": {"schema": ref}}}
                )
    return result
