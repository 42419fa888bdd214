"""Per-merchant routing rules as data (issue 5): currency, amount range, brand, BIN country,
method type and weights decide where real payments go (real sandbox HTTP); bad rules are refused
with clear errors; operations edit them in the admin, support cannot, and staff only for their
merchants."""

from __future__ import annotations

from collections import Counter

import pytest
from django.core.exceptions import ValidationError

from payments.models import BinRange, Payment, RoutingRule
from payments.services import payment_create
from payments.services.payments import bin_country
from tests.backoffice.staff import make_staff, otp_force_login
from tests.merchants.factories import MerchantFactory

pytestmark = pytest.mark.django_db


def card(number: str = "4242424242424242") -> dict:
    return {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def first_connector(payment: Payment) -> str:
    return payment.attempts.order_by("sequence").first().connector


def rule(merchant, connector: str, **fields) -> RoutingRule:
    r = RoutingRule(merchant=merchant, connector=connector, **fields)
    r.full_clean()
    r.save()
    return r


def test_without_rules_the_merchants_ordered_connectors_route(psp_settings):
    merchant = MerchantFactory(connectors=["beta", "alpha"])
    p = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=card())
    assert first_connector(p) == "beta"


def test_currency_amount_and_brand_rules_pick_the_connector(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"])  # ignored once rules exist
    rule(merchant, "beta", priority=0, currencies="usd")
    rule(merchant, "beta", priority=0, min_amount=50_000)
    rule(merchant, "beta", priority=0, brands="Mastercard")
    rule(merchant, "alpha", priority=1)
    pay = lambda amount=1000, currency="EUR", number="4242424242424242": first_connector(  # noqa: E731
        payment_create(merchant=merchant, amount=amount, currency=currency, payment_method_data=card(number)))
    assert pay() == "alpha"
    assert pay(currency="USD") == "beta"
    assert pay(amount=50_000) == "beta"
    assert pay(amount=49_999) == "alpha"
    assert pay(number="5555555555554444") == "beta"


def test_bin_country_rule_uses_the_longest_matching_bin_range(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"])
    BinRange.objects.update_or_create(prefix="5555", defaults={"country": "GB"})
    BinRange.objects.update_or_create(prefix="555555", defaults={"country": "DE"})
    assert bin_country("555555") == "DE" and bin_country("555500") == "GB" and bin_country("999999") is None
    rule(merchant, "beta", priority=0, bin_countries="de")
    rule(merchant, "alpha", priority=1)
    p = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=card("5555555555554444"))
    assert first_connector(p) == "beta"
    p = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=card())  # 424242: US
    assert first_connector(p) == "alpha"


def test_rules_that_no_connector_supports_leave_the_payment_unsupported(psp_settings):
    merchant = MerchantFactory(connectors=["alpha", "beta"])
    rule(merchant, "alpha", currencies="EUR")  # only alpha, only EUR
    from payments.services.methods import PaymentMethodUnsupportedError

    with pytest.raises(PaymentMethodUnsupportedError):
        payment_create(merchant=merchant, amount=1000, currency="USD", payment_method_data=card())
    assert not Payment.objects.filter(merchant=merchant).exists()  # refused before anything was stored


def test_weights_split_volume_and_a_disabled_or_zero_weight_rule_gets_none(psp_settings):
    merchant = MerchantFactory(connectors=["alpha"])
    rule(merchant, "alpha", priority=0, weight=75)
    rule(merchant, "beta", priority=0, weight=25)
    firsts = Counter(first_connector(payment_create(merchant=merchant, amount=1000, currency="EUR",
                                                    payment_method_data=card())) for _ in range(40))
    assert firsts["alpha"] > firsts["beta"] > 0
    RoutingRule.objects.filter(merchant=merchant, connector="beta").update(weight=0)
    assert {first_connector(payment_create(merchant=merchant, amount=1000, currency="EUR",
                                           payment_method_data=card())) for _ in range(10)} == {"alpha"}
    RoutingRule.objects.filter(merchant=merchant).update(enabled=False)  # back to the connectors list
    merchant.connectors = ["beta"]
    merchant.save(update_fields=["connectors"])
    p = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=card())
    assert first_connector(p) == "beta"


@pytest.mark.parametrize(("fields", "field"), [
    ({"connector": "gamma"}, "connector"),
    ({"currencies": "EUR,XYZ"}, "currencies"),
    ({"bin_countries": "DE,ZZ"}, "bin_countries"),
    ({"brands": "visa,bogus"}, "brands"),
    ({"method_types": "cheque"}, "method_types"),
    ({"min_amount": 500, "max_amount": 100}, "max_amount"),
    ({"min_amount": -1}, "min_amount"),
])
def test_a_bad_rule_is_refused_with_the_field_and_a_clear_message(fields, field):
    merchant = MerchantFactory()
    r = RoutingRule(merchant=merchant, **{"connector": "alpha", **fields})
    with pytest.raises(ValidationError) as err:
        r.full_clean()
    assert field in err.value.message_dict and err.value.message_dict[field][0]


def test_operations_edit_rules_for_their_merchants_only_and_support_cannot(client):
    from payera.staff.access import staff_grant_merchant

    a, b = MerchantFactory(), MerchantFactory()
    ops = make_staff("ops-routing", role="operations")
    support = make_staff("support-routing", role="support")
    for user in (ops, support):
        staff_grant_merchant(user=user, merchant_id=a.pk)
    form = {"connector": "beta", "priority": 0, "weight": 100, "currencies": "eur", "enabled": "on"}

    otp_force_login(client, support)
    assert client.get("/admin/payments/routingrule/add/").status_code == 403
    client.logout()

    otp_force_login(client, ops)
    page = client.get("/admin/payments/routingrule/add/")
    assert page.status_code == 200
    assert a.pk in page.content.decode() and b.pk not in page.content.decode()  # only their merchants offered
    answer = client.post("/admin/payments/routingrule/add/", {**form, "merchant": b.pk})
    assert answer.status_code == 200 and not RoutingRule.objects.filter(merchant=b).exists()  # not a choice
    answer = client.post("/admin/payments/routingrule/add/", {**form, "merchant": a.pk, "currencies": "EUR,XYZ"})
    assert answer.status_code == 200 and "Not ISO 4217: XYZ" in answer.content.decode()
    answer = client.post("/admin/payments/routingrule/add/", {**form, "merchant": a.pk})
    assert answer.status_code == 302
    saved = RoutingRule.objects.get(merchant=a)
    assert saved.currencies == "EUR" and saved.connector == "beta"
    from payera.audit.models import AuditLogEntry

    assert AuditLogEntry.objects.filter(object_pk=str(saved.pk), content_type__model="routingrule").exists()
