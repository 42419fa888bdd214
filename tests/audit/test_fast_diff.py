"""payera.audit.diff: auditlog's diff with less work per entry must give exactly auditlog's result.
Every diff the payment flows below compute is checked against auditlog's own function."""

from __future__ import annotations

import json

import pytest
from auditlog import diff as auditlog_diff
from auditlog import receivers

from payera.audit import diff as fast
from payera.audit.models import AuditLogEntry as LogEntry
from payera.merchants.services import api_key_revoke
from payments.models import Payment, PaymentMethod
from tests.conftest import client_for
from tests.merchants.factories import MerchantFactory, make_api_key

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def checked(monkeypatch):
    calls = []

    def both(old, new, fields_to_check=None, use_json_for_changes=False):
        ours = fast.model_instance_diff(old, new, fields_to_check, use_json_for_changes)
        theirs = auditlog_diff.model_instance_diff(old, new, fields_to_check, use_json_for_changes)
        assert ours == theirs, (type(new).__name__, ours, theirs)
        calls.append((type(new).__name__, old is None, ours))
        return ours

    monkeypatch.setattr(receivers, "model_instance_diff", both)
    return calls


def test_the_entries_of_the_payment_flows_are_auditlogs(psp_settings, checked):
    merchant = MerchantFactory(connectors=["alpha", "beta"])
    key = make_api_key(merchant)
    client = client_for(key.secret)

    def post(path, key_, **body):
        return client.post(path, data=json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key_)

    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    customer = post("/v1/customers", "c", email="a@example.com").json()["id"]
    post(
        "/v1/payments",
        "p1",
        amount=1000,
        currency="EUR",
        payment_method_data={"type": "card", "card": card},
        metadata={"order": "1"},
    )
    manual = post(
        "/v1/payments",
        "p2",
        amount=900,
        currency="EUR",
        capture_method="manual",
        customer=customer,
        setup_future_usage="off_session",
        payment_method_data={"type": "card", "card": card},
    ).json()
    post(f"/v1/payments/{manual['id']}/capture", "p2c", amount_to_capture=500)
    post("/v1/refunds", "r1", payment=manual["id"], amount=100)
    declined = dict(card, number="4000000000000119")  # soft decline on alpha, cascaded to beta
    post("/v1/payments", "p3", amount=700, currency="EUR", payment_method_data={"type": "card", "card": declined})
    post(
        "/v1/payments",
        "p4",
        amount=700,
        currency="EUR",
        payment_method_data={"type": "card", "card": dict(card, number="4000000000000002")},
    )
    api_key_revoke(api_key_id=key.api_key.id)
    merchant.refresh_from_db()
    merchant.name = "renamed"
    merchant.save()
    kinds = {(name, created) for name, created, _ in checked}
    assert {
        ("Payment", True),
        ("Payment", False),
        ("PaymentMethod", True),
        ("Refund", True),
        ("ApiKey", False),
        ("Merchant", False),
    } <= kinds
    assert any(changes and not created for _, created, changes in checked)


def test_an_update_of_a_json_field_changed_in_place_is_seen():
    merchant = MerchantFactory()
    payment = Payment.objects.create(merchant=merchant, amount=5, currency="EUR", metadata={"a": 1})
    old = Payment.objects.get(pk=payment.pk)
    new = Payment.objects.get(pk=payment.pk)
    new.metadata["a"] = 1.0  # equal in Python, another string in the entry
    new.amount = 6
    ours = fast.model_instance_diff(old, new)
    assert ours == auditlog_diff.model_instance_diff(old, new)
    assert set(ours) == {"metadata", "amount"}
    assert fast.model_instance_diff(old, Payment.objects.get(pk=payment.pk)) is None
    assert fast.model_instance_diff(old, new, fields_to_check=["amount"]) == {"amount": ("5", "6")}


def test_the_entries_are_written_with_the_fast_diff_installed(psp_settings):
    assert receivers.model_instance_diff is fast.model_instance_diff
    merchant = MerchantFactory(connectors=["alpha"])
    client = client_for(make_api_key(merchant).secret)
    body = {
        "amount": 1000,
        "currency": "EUR",
        "payment_method_data": {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        },
    }
    payment = client.post(
        "/v1/payments", data=json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    ).json()
    created, updated = LogEntry.objects.filter(object_pk=payment["id"]).order_by("id")
    assert created.changes_dict["status"] == ["None", "processing"]
    assert updated.changes_dict["status"] == ["processing", "succeeded"]
    pm = PaymentMethod.objects.get(pk=payment["payment_method"]["id"])
    assert LogEntry.objects.filter(object_pk=pm.pk, action=LogEntry.Action.CREATE).count() == 1
