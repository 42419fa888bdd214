"""Integers no database column holds (beyond PostgreSQL's bigint, or SQLite's 64-bit integer) in any
integer the public API takes: a 400 naming the field, nothing stored, never a DataError or 500.

Suspected by review (session 18): amounts, limits and metadata-derived integers of 2**63 reaching
the database. Not so when checked: every integer input is bounded before any write — amounts by
`MAX_AMOUNT` (payments, bookings, subscriptions) or by what is capturable / refundable / held
(capture, refund, booking completion, compared in Python under the row's lock), `interval_count`
per interval, `limit` to 1-100, card expiry to a month and a year, `hold_expires_at` to 7 days,
metadata values to strings. This test keeps it so: it walks the OpenAPI schema for every integer
a request body or query takes, fails for one it does not know, and sends each 2**63, -2**63 - 1 and
10**30 with its object in the state that reaches the deepest check. It is a scenario, so it runs on
PostgreSQL and on the embedded SQLite (`scripts/run_embedded_scenarios.py`).
"""

from __future__ import annotations

import json
import time

import pytest

from payments.models import Booking, Customer, Payment, PaymentMethod, Refund, Subscription
from tests.conftest import client_for
from tests.merchants.factories import MerchantFactory, make_api_key

pytestmark = [pytest.mark.scenario, pytest.mark.django_db(transaction=True)]

HUGE = (2**63, -(2**63) - 1, 10**30)
CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}

# (method, path in the schema, field) -> how to send a value `v` there: (path, body) given the objects
BODIES = {
    ("post", "/v1/payments", "amount"): lambda o, v: (
        "/v1/payments",
        {"amount": v, "currency": "EUR", "payment_method_data": CARD},
    ),
    ("post", "/v1/payments/{id}/capture", "amount_to_capture"): lambda o, v: (
        f"/v1/payments/{o['capturable']}/capture",
        {"amount_to_capture": v},
    ),
    ("post", "/v1/refunds", "amount"): lambda o, v: ("/v1/refunds", {"payment": o["succeeded"], "amount": v}),
    ("post", "/v1/bookings", "amount"): lambda o, v: (
        "/v1/bookings",
        {
            "amount": v,
            "currency": "EUR",
            "payment_method_data": CARD,
            "reference": "r",
            "hold_expires_at": int(time.time()) + 3600,
        },
    ),
    ("post", "/v1/bookings/{id}/complete", "amount"): lambda o, v: (
        f"/v1/bookings/{o['confirmed_booking']}/complete",
        {"amount": v},
    ),
    ("post", "/v1/subscriptions", "amount"): lambda o, v: (
        "/v1/subscriptions",
        {
            "customer": o["customer"],
            "payment_method": o["saved_method"],
            "amount": v,
            "currency": "EUR",
            "interval": "month",
        },
    ),
    ("post", "/v1/subscriptions", "interval_count"): lambda o, v: (
        "/v1/subscriptions",
        {
            "customer": o["customer"],
            "payment_method": o["saved_method"],
            "amount": 500,
            "currency": "EUR",
            "interval": "month",
            "interval_count": v,
        },
    ),
}
# integers inside JSON the schema types as free-form (card expiry, unix seconds, metadata values)
NESTED = {
    "payment_method_data[card][exp_month]": lambda o, v: (
        "/v1/payments",
        {
            "amount": 1000,
            "currency": "EUR",
            "payment_method_data": {"type": "card", "card": {**CARD["card"], "exp_month": v}},
        },
    ),
    "payment_method_data[card][exp_year]": lambda o, v: (
        "/v1/payments",
        {
            "amount": 1000,
            "currency": "EUR",
            "payment_method_data": {"type": "card", "card": {**CARD["card"], "exp_year": v}},
        },
    ),
    "hold_expires_at": lambda o, v: (
        "/v1/bookings",
        {"amount": 1000, "currency": "EUR", "payment_method_data": CARD, "reference": "r", "hold_expires_at": v},
    ),
    "metadata[n]": lambda o, v: (
        "/v1/payments",
        {"amount": 1000, "currency": "EUR", "payment_method_data": CARD, "metadata": {"n": v}},
    ),
    "metadata[n] ": lambda o, v: (f"/v1/subscriptions/{o['subscription']}", {"metadata": {"n": v}}),
    "metadata[n]  ": lambda o, v: ("/v1/customers", {"email": "a@example.com", "metadata": {"n": v}}),
}


def _integer_inputs(schema: dict) -> tuple[set, set]:
    """(method, path, field) of every integer property of a JSON request body, and the lists'
    integer query parameters as (path, name)."""
    components = schema["components"]["schemas"]

    def props(node: dict) -> dict:
        if "$ref" in node:
            return props(components[node["$ref"].rsplit("/", 1)[1]])
        found = dict(node.get("properties", {}))
        for part in node.get("allOf", []):
            found |= props(part)
        return found

    bodies, queries = set(), set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and parameter.get("schema", {}).get("type") == "integer":
                    queries.add((path, parameter["name"]))
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            for name, prop in props(content["schema"]).items() if content else ():
                if prop.get("type") == "integer" or "integer" in prop.get("type", []):
                    bodies.add((method, path, name))
    return bodies, queries


def _stored() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Payment, Refund, Booking, Subscription, Customer, PaymentMethod))


def test_every_integer_the_api_takes_refuses_what_no_column_holds(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"])
    api = client_for(make_api_key(merchant).secret)

    def post(path: str, body: dict):
        return api.post(path, data=json.dumps(body), content_type="application/json")

    schema = api.get("/v1/schema/", {"format": "json"})
    assert schema.status_code == 200
    bodies, queries = _integer_inputs(json.loads(schema.content))
    assert bodies == set(BODIES), "an integer input this test does not send yet: add it to BODIES"
    assert {name for _, name in queries} == {"limit"}, "a new integer query parameter: send it here too"

    customer = post("/v1/customers", {"email": "shopper@example.com"}).json()["id"]
    saved = post(
        "/v1/payments",
        {
            "amount": 1000,
            "currency": "EUR",
            "payment_method_data": CARD,
            "customer": customer,
            "setup_future_usage": "off_session",
        },
    ).json()
    capturable = post(
        "/v1/payments", {"amount": 1000, "currency": "EUR", "payment_method_data": CARD, "capture_method": "manual"}
    ).json()
    booking = post(
        "/v1/bookings",
        {
            "amount": 1000,
            "currency": "EUR",
            "payment_method_data": CARD,
            "reference": "r",
            "hold_expires_at": int(time.time()) + 3600,
        },
    ).json()
    confirmed = post(f"/v1/bookings/{booking['id']}/confirm", {}).json()
    subscription = post(
        "/v1/subscriptions",
        {
            "customer": customer,
            "payment_method": saved["payment_method"]["id"],
            "amount": 500,
            "currency": "EUR",
            "interval": "month",
        },
    ).json()
    assert (saved["status"], capturable["status"], confirmed["status"], subscription["status"]) == (
        "succeeded",
        "requires_capture",
        "confirmed",
        "active",
    )
    objects = {
        "customer": customer,
        "saved_method": saved["payment_method"]["id"],
        "succeeded": saved["id"],
        "capturable": capturable["id"],
        "confirmed_booking": booking["id"],
        "subscription": subscription["id"],
    }

    before = _stored()
    refused = []
    for (_, _, field), send in BODIES.items():
        for value in HUGE:
            refused.append((field, value, post(*send(objects, value))))
    for param, send in NESTED.items():
        for value in HUGE:
            refused.append((param.strip(), value, post(*send(objects, value))))
    for path, _ in queries:
        if "{" in path:
            path = path.replace("{id}", customer)
        for value in HUGE:
            refused.append(("limit", value, api.get(path, {"limit": str(value)})))

    wrong = [
        (field, value, r.status_code, r.content[:200])
        for field, value, r in refused
        if r.status_code != 400 or r.json()["error"].get("param") != field
    ]
    assert wrong == []
    assert _stored() == before  # nothing made, nothing half-made
