"""POST /v1/payments takes a plain body without building DRF's serializer
(payments.api.payments.payment_input_plain): what it takes must be exactly DRF's validated data,
and everything else goes to DRF (so every error keeps its wording: CONTRACT "Errors")."""

from __future__ import annotations

import json

import pytest
from rest_framework import serializers

from payments.api.payments import PaymentListCreateApi, payment_input_plain

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
BASE = {"amount": 1000, "currency": "EUR", "payment_method_data": CARD}

TAKEN = [
    BASE,
    {**BASE, "capture_method": "manual", "confirm": False, "off_session": False},
    {**BASE, "customer": "cus_1", "setup_future_usage": "off_session", "description": "order 7 / 2"},
    {**BASE, "setup_future_usage": "", "description": "", "return_url": "", "metadata": {"a": "1", "b": 2}},
    {**BASE, "payment_method": None, "customer": None, "return_url": None, "metadata": None, "mandate_data": None},
    {"amount": 5, "currency": "eur", "payment_method": "pm_1", "mandate_data": {"x": [1, None]}, "unknown": 1},
    {**BASE, "payment_method_data": [1, "two"], "metadata": {}},
    {**BASE, "amount": -3, "currency": "XXXXXXXX"},  # the service refuses these, not the shape
]
LEFT_TO_DRF = [
    [BASE],
    {"currency": "EUR"},
    {"amount": 1000},
    {**BASE, "amount": "1000"},
    {**BASE, "amount": 10.0},
    {**BASE, "amount": True},
    {**BASE, "amount": None},
    {**BASE, "currency": ""},
    {**BASE, "currency": " EUR"},
    {**BASE, "currency": "EURO12345"},
    {**BASE, "currency": 978},
    {**BASE, "currency": "E\x00R"},
    {**BASE, "currency": "ÉUR"},
    {**BASE, "capture_method": None},
    {**BASE, "confirm": "true"},
    {**BASE, "confirm": None},
    {**BASE, "off_session": 1},
    {**BASE, "return_url": "https://shop.example/back"},
    {**BASE, "description": "x" * 1001},
    {**BASE, "description": "two\nlines"},
    {**BASE, "setup_future_usage": "   "},
    {**BASE, "metadata": {"a": None}},
    {**BASE, "metadata": ["a"]},
    {**BASE, "customer": "c" * 65},
]


@pytest.mark.parametrize("body", TAKEN)
def test_a_plain_body_is_taken_as_drf_takes_it(body):
    body = json.loads(json.dumps(body))  # as the JSON parser hands it over
    plain = payment_input_plain(body)
    assert plain is not None
    serializer = PaymentListCreateApi.PaymentCreateInput(data=body)
    assert serializer.is_valid(), serializer.errors
    assert plain == dict(serializer.validated_data)
    assert {k: type(v) for k, v in plain.items()} == {k: type(v) for k, v in serializer.validated_data.items()}


@pytest.mark.parametrize("body", LEFT_TO_DRF)
def test_anything_else_is_left_to_drf(body):
    assert payment_input_plain(json.loads(json.dumps(body))) is None


@pytest.mark.django_db
def test_the_view_takes_a_plain_body_without_the_serializer_and_words_errors_as_drf(psp_settings, monkeypatch):
    from tests.conftest import client_for
    from tests.merchants.factories import MerchantFactory, make_api_key

    client = client_for(make_api_key(MerchantFactory(connectors=["alpha"])).secret)
    built = []
    real_init = PaymentListCreateApi.PaymentCreateInput.__init__

    def init(self, *args, **kwargs):
        built.append(kwargs.get("data"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(PaymentListCreateApi.PaymentCreateInput, "__init__", init)

    def post(key, body):
        return client.post(
            "/v1/payments", data=json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
        )

    assert post("k1", BASE).json()["status"] == "succeeded"
    assert built == []
    answer = post("k2", {**BASE, "amount": "ten"})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "amount" and answer.json()["error"]["code"] == "parameter_invalid"
    assert len(built) == 1


def test_the_plain_path_reads_its_fields_from_the_serializer(monkeypatch):
    """payment_input_plain takes its fields from PaymentCreateInput (one source): a field added to
    the serializer is taken on the plain path too, and a field it cannot check sends every body to
    DRF."""
    from payments.api import payments as api

    declared = PaymentListCreateApi.PaymentCreateInput._declared_fields
    assert [f[0] for f in api._plain_fields()] == list(declared)
    try:
        monkeypatch.setitem(declared, "statement_descriptor", serializers.CharField(max_length=22, required=False))
        api._plain_fields.cache_clear()
        assert payment_input_plain({**BASE, "statement_descriptor": "SHOP"})["statement_descriptor"] == "SHOP"
        assert payment_input_plain({**BASE, "statement_descriptor": "S" * 23}) is None
        monkeypatch.setitem(declared, "statement_descriptor", serializers.CharField(min_length=2, required=False))
        api._plain_fields.cache_clear()
        assert payment_input_plain(BASE) is None
        monkeypatch.setitem(declared, "statement_descriptor", serializers.DateField(required=False))
        api._plain_fields.cache_clear()
        assert payment_input_plain(BASE) is None
    finally:
        monkeypatch.undo()
        api._plain_fields.cache_clear()
    assert payment_input_plain(BASE) is not None
