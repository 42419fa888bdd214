"""Every audit entry a merchant's object makes names that merchant (`object_merchant_id`), so the
back office shows it to that merchant's staff and to no other merchant's (docs/decisions/audit-trail.md).

What was wrong: the registry found an object's merchant only in a field named `merchant`. A saved
card's PSP credential (`PaymentMethodCredential`: the PSP token and the network transaction id a
merchant-initiated charge reuses) has no merchant of its own, only its payment method's, so its
entries — created when a payment saved the card, deleted when the card was detached — carried no
merchant: a support agent limited to that merchant never saw who added or removed the credentials
of its customers' cards (only unlimited admins did). And a model keeping the merchant's public id as
text in `merchant_id` (the events app's rows, no foreign key) was attributed only if its
registration named the field; registered without it, its entries had no merchant either.

Now `merchant_field` may be a path through the object's parent (`payment_method__merchant`), a text
`merchant_id` is found by default, and every registered model that belongs to a merchant (a field
named merchant/merchant_id, or a foreign key chain to one) must resolve its merchant.
"""

from __future__ import annotations

import pytest
from auditlog.registry import auditlog
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType

from payera.audit import registry
from payera.audit.models import AuditLogEntry
from payera.events.models import WebhookEndpoint
from payera.merchants.models import Merchant
from payera.staff.access import staff_grant_merchant
from payments.models import PaymentMethodCredential
from tests.backoffice.staff import make_staff, otp_force_login
from tests.conftest import client_for
from tests.merchants.factories import MerchantFactory, make_api_key

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def _belongs_to_a_merchant(model, depth: int = 2) -> bool:
    """A field named merchant/merchant_id, or a foreign key (chain) to a row that has one."""
    if model is Merchant:
        return True
    names = {f.name for f in model._meta.concrete_fields} | {f.attname for f in model._meta.concrete_fields}
    if names & {"merchant", "merchant_id"}:
        return True
    return depth > 0 and any(
        _belongs_to_a_merchant(f.related_model, depth - 1)
        for f in model._meta.concrete_fields
        if (f.many_to_one or f.one_to_one)
        and f.related_model is not None
        and f.related_model._meta.app_label not in ("auth", "contenttypes")
    )


def test_every_registered_model_that_belongs_to_a_merchant_says_which():
    registry.merchant_id_of(Merchant())  # (the registry's table is filled lazily for auditlog.register)
    missing = [
        m._meta.label for m in auditlog.get_models() if _belongs_to_a_merchant(m) and not registry._merchant_attr.get(m)
    ]
    assert missing == []


def _entries(model, pk) -> list[AuditLogEntry]:
    ct = ContentType.objects.get_for_model(model)
    return list(AuditLogEntry.objects.filter(content_type=ct, object_pk=str(pk)).order_by("pk"))


@pytest.mark.django_db(transaction=True)
def test_a_saved_cards_psp_credential_is_shown_to_its_merchants_staff_only(psp_settings, client):
    a, b = MerchantFactory(connectors=["alpha"]), MerchantFactory(connectors=["alpha"])
    api = client_for(make_api_key(a).secret)
    customer = api.post("/v1/customers", {"email": "shopper@example.com"}, format="json").json()["id"]
    paid = api.post(
        "/v1/payments",
        {
            "amount": 1000,
            "currency": "EUR",
            "payment_method_data": CARD,
            "customer": customer,
            "setup_future_usage": "off_session",
        },
        format="json",
    )
    assert paid.status_code == 201 and paid.json()["status"] == "succeeded", paid.content
    pm = paid.json()["payment_method"]["id"]
    credential = PaymentMethodCredential.objects.get(payment_method_id=pm)
    assert api.post(f"/v1/payment_methods/{pm}/detach", {}, format="json").status_code == 200
    entries = _entries(PaymentMethodCredential, credential.pk)
    assert [e.action for e in entries] == [AuditLogEntry.Action.CREATE, AuditLogEntry.Action.DELETE]
    assert {e.object_merchant_id for e in entries} == {a.id}

    # the back office: an auditor limited to merchant A sees them, one limited to merchant B does not
    shown = {}
    for merchant in (a, b):
        auditor = make_staff(f"auditor-{merchant.id[-6:].lower()}")
        auditor.user_permissions.add(Permission.objects.get(codename="view_auditlogentry"))
        staff_grant_merchant(user=auditor, merchant_id=merchant.id)
        otp_force_login(client, auditor)
        page = client.get("/admin/audit/auditlogentry/", {"object_pk": str(credential.pk)})
        assert page.status_code == 200
        shown[merchant.id] = {e.pk for e in page.context["cl"].result_list} & {e.pk for e in entries}
        client.logout()
    assert shown == {a.id: {e.pk for e in entries}, b.id: set()}


@pytest.mark.django_db
def test_a_text_merchant_id_is_the_objects_merchant_without_naming_it(monkeypatch):
    """The events app keeps the merchant's public id as text (no foreign key): registered without
    `merchant_field`, its entries still name the merchant."""
    from payera.events.services import webhook_endpoint_create

    merchant = MerchantFactory()
    monkeypatch.delitem(registry._merchant_attr, WebhookEndpoint)  # as if registered with the default
    endpoint = webhook_endpoint_create(
        merchant_id=merchant.id, url="http://127.0.0.1:9/hook", enabled_events=["*"]
    ).endpoint
    assert [e.object_merchant_id for e in _entries(WebhookEndpoint, endpoint.pk)] == [merchant.id]
