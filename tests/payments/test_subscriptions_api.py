"""Subscriptions and saved payment methods through the API: what is refused before any charge,
and the shapes (the charging paths run end to end in tests/scenarios/test_subscriptions.py)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from payera.events.models import Event
from payments.models import PaymentMethod, PaymentMethodCredential, Subscription, SubscriptionCharge
from payments.services import customer_create

pytestmark = pytest.mark.django_db


def saved(merchant, customer=None, *, credential=True) -> PaymentMethod:
    customer = customer or customer_create(merchant=merchant)
    pm = PaymentMethod.objects.create(merchant=merchant, customer=customer, card_brand="visa", card_last4="4242",
                                      card_exp_month=12, card_exp_year=2034, fingerprint="a" * 64)
    if credential:
        PaymentMethodCredential.objects.create(payment_method=pm, connector="alpha", psp_token="tok_x",
                                               network_transaction_id="NTIDX")
    return pm


def body(pm, **over):
    return {"customer": pm.customer_id, "payment_method": pm.id, "amount": 900, "currency": "EUR",
            "interval": "month", "interval_count": 1, **over}


@pytest.mark.parametrize("over, param, status", [
    ({"interval": "fortnight"}, "interval", 400),
    ({"interval_count": 0}, "interval_count", 400),
    ({"interval_count": 13}, "interval_count", 400),
    ({"interval": "day", "interval_count": 366}, "interval_count", 400),
    ({"amount": 0}, "amount", 400),
    ({"amount": -5}, "amount", 400),
    ({"currency": "XXZ"}, "currency", 400),
    ({"customer": "cus_nope"}, "customer", 404),
    ({"payment_method": "pm_nope"}, "payment_method", 404),
    ({"metadata": {"k": 1}}, "metadata[k]", 400),
    ({"cancel_at_period_end": "maybe"}, "cancel_at_period_end", 400),
    ({"cancel_at_period_end": None}, "cancel_at_period_end", 400),
    ({"cancel_at_period_end": [True]}, "cancel_at_period_end", 400),
])
def test_bad_subscriptions_are_refused_before_any_write(merchant_client, merchant, over, param, status):
    pm = saved(merchant)
    r = merchant_client.post("/v1/subscriptions", body(pm, **over), format="json")
    assert r.status_code == status, r.content
    assert r.json()["error"]["param"] == param
    assert not Subscription.objects.exists() and not SubscriptionCharge.objects.exists()


def test_another_customers_card_is_404(merchant_client, merchant):
    pm = saved(merchant)
    other = customer_create(merchant=merchant)
    r = merchant_client.post("/v1/subscriptions", body(pm, customer=other.id), format="json")
    assert r.status_code == 404 and r.json()["error"]["param"] == "payment_method"


@pytest.mark.parametrize("taker", ["create", "update"])
def test_another_customers_detached_card_is_404_not_detached(merchant_client, merchant, taker):
    """docs/api.md: a `payment_method` not of the customer is 404, on create as on update. The method
    row lock taken before the check (`method_lock_for_subscription`) also checked `detached_at`,
    before the ownership: another customer's detached card answered 400 `payment_method_detached`,
    telling a merchant's key that this id is some other customer's (detached) card."""
    theirs = saved(merchant)
    assert merchant_client.post(f"/v1/payment_methods/{theirs.id}/detach").status_code == 200
    mine = saved(merchant)
    if taker == "create":
        r = merchant_client.post("/v1/subscriptions", body(mine, payment_method=theirs.id), format="json")
    else:
        sub = Subscription.objects.create(merchant=merchant, customer=mine.customer, payment_method=mine, amount=900,
                                          currency="EUR", interval="month", anchor=timezone.now())
        r = merchant_client.post(f"/v1/subscriptions/{sub.id}", {"payment_method": theirs.id}, format="json")
    assert r.status_code == 404, r.content
    assert r.json()["error"]["param"] == "payment_method"


def test_a_card_never_saved_by_a_successful_payment_is_refused(merchant_client, merchant):
    pm = saved(merchant, credential=False)
    r = merchant_client.post("/v1/subscriptions", body(pm), format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "payment_method_not_reusable"


def test_a_detached_card_is_refused(merchant_client, merchant):
    pm = saved(merchant)
    assert merchant_client.post(f"/v1/payment_methods/{pm.id}/detach").status_code == 200
    r = merchant_client.post("/v1/subscriptions", body(pm), format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "payment_method_detached"


def test_subscription_object_list_and_filters(merchant_client, merchant):
    pm = saved(merchant)
    now = timezone.now()
    a = Subscription.objects.create(merchant=merchant, customer=pm.customer, payment_method=pm, amount=900,
                                    currency="EUR", interval="week", interval_count=2, anchor=now)
    other_pm = saved(merchant)
    Subscription.objects.create(merchant=merchant, customer=other_pm.customer, payment_method=other_pm, amount=100,
                                currency="EUR", interval="day", anchor=now)
    got = merchant_client.get(f"/v1/subscriptions/{a.id}").json()
    assert got["object"] == "subscription" and got["status"] == "active"
    assert (got["interval"], got["interval_count"], got["amount"], got["currency"]) == ("week", 2, 900, "EUR")
    assert got["current_period_end"] - got["current_period_start"] == 14 * 86400
    assert got["latest_payment"] is None and got["created"] > 0
    listed = merchant_client.get("/v1/subscriptions", {"customer": pm.customer_id}).json()
    assert [s["id"] for s in listed["data"]] == [a.id] and listed["has_more"] is False
    assert len(merchant_client.get("/v1/subscriptions").json()["data"]) == 2
    assert merchant_client.get("/v1/subscriptions", {"status": "canceled"}).json()["data"] == []


@pytest.mark.parametrize("status", ["pastdue", "past-due", "PAST_DUE", "failed"])
def test_a_misspelt_status_filter_is_400_not_an_empty_list(merchant_client, merchant, status):
    """`GET /v1/subscriptions?status=pastdue` answered an empty list: a merchant's dunning job asking
    for its failing subscriptions with a misspelt status read "none are past due" and chased no
    customer. The dispute and booking lists already refuse an unknown status (400, param status)."""
    pm = saved(merchant)
    sub = Subscription.objects.create(merchant=merchant, customer=pm.customer, payment_method=pm, amount=900,
                                      currency="EUR", interval="week", anchor=timezone.now())
    Subscription.objects.filter(pk=sub.pk).update(status="past_due")
    r = merchant_client.get("/v1/subscriptions", {"status": status})
    assert r.status_code == 400, r.content
    assert r.json()["error"]["param"] == "status" and "past_due" in r.json()["error"]["message"]
    assert [s["id"] for s in merchant_client.get("/v1/subscriptions", {"status": "past_due"}).json()["data"]] == [
        sub.id]


def test_cancel_records_the_event_and_a_canceled_one_cannot_change(merchant_client, merchant):
    pm = saved(merchant)
    sub = Subscription.objects.create(merchant=merchant, customer=pm.customer, payment_method=pm, amount=900,
                                      currency="EUR", interval="month", anchor=timezone.now(),
                                      next_charge_at=timezone.now())
    r = merchant_client.post(f"/v1/subscriptions/{sub.id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled" and r.json()["next_charge_at"] is None
    assert Event.objects.filter(type="subscription.canceled", data__object__id=sub.id).count() == 1
    r = merchant_client.post(f"/v1/subscriptions/{sub.id}", {"payment_method": saved(merchant, pm.customer).id},
                             format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "subscription_unexpected_state"


def test_payment_method_object_shows_masked_data_only(merchant_client, merchant):
    pm = saved(merchant)
    got = merchant_client.get(f"/v1/payment_methods/{pm.id}").json()
    assert set(got) == {"id", "object", "type", "customer", "card", "sepa_debit", "fingerprint", "reusable", "detached",
                        "created"}
    assert got["sepa_debit"] is None
    assert got["card"]["last4"] == "4242" and got["reusable"] is True and got["detached"] is None
    assert "tok_x" not in str(got) and "NTIDX" not in str(got) and "a" * 64 not in str(got)


def test_detaching_a_card_not_saved_to_a_customer_is_400(merchant_client, merchant):
    pm = PaymentMethod.objects.create(merchant=merchant, card_brand="visa", card_last4="4242")
    r = merchant_client.post(f"/v1/payment_methods/{pm.id}/detach")
    assert r.status_code == 400 and r.json()["error"]["code"] == "payment_method_not_attached"


def test_an_off_session_challenge_from_a_psp_fails_the_payment_authentication_required(merchant):
    """Even if a PSP asks for 3-D Secure on a flagged MIT, nobody is there to pass it."""
    from django.db import transaction

    from payments.locks import payment_lock
    from payments.models import Payment, PaymentAttempt
    from payments.services.payments import apply_authorization
    from psp_adapters.port import Outcome, PspState

    pm = saved(merchant)
    pay = Payment.objects.create(merchant=merchant, amount=500, currency="EUR", payment_method=pm,
                                 customer=pm.customer, off_session=True)
    Payment.objects.filter(pk=pay.pk).update(status="processing")
    att = PaymentAttempt.objects.create(payment=pay, merchant=merchant, sequence=1, connector="alpha", amount=500,
                                        currency="EUR")
    with transaction.atomic():
        payment = payment_lock(pay.id)
        apply_authorization(payment, PaymentAttempt.objects.get(pk=att.pk), outcome=Outcome.REQUIRES_ACTION,
                            state=PspState.REQUIRES_ACTION, psp_reference="auth_1", amount=500, currency="EUR",
                            amount_captured=0, decline=None, action_url="https://psp.example/challenge", actor="t",
                            may_cascade=True)
    pay.refresh_from_db()
    assert pay.status == "failed" and pay.next_action is None
    assert pay.last_error["decline_code"] == "authentication_required"
    assert PaymentAttempt.objects.get(pk=att.pk).status == "declined"
    assert set(Event.objects.filter(data__object__id=pay.id).values_list("type", flat=True)) == {
        "payment.failed", "payment.authentication_required"}


def test_admin_cancel_action_cancels_through_the_service(merchant, client):
    from django.contrib.auth import get_user_model

    pm = saved(merchant)
    sub = Subscription.objects.create(merchant=merchant, customer=pm.customer, payment_method=pm, amount=900,
                                      currency="EUR", interval="month", anchor=timezone.now())
    from payments.admin import SubscriptionAdmin

    user = get_user_model().objects.create_superuser("root-sub", "root@example.com", "x" * 16)
    from django.contrib import admin as django_admin
    from django.test import RequestFactory

    request = RequestFactory().post("/admin/", {"confirm": "1", "reason": "merchant asked by phone"})
    request.user = user
    request._messages = type("M", (), {"add": lambda *a, **k: None})()
    model_admin = SubscriptionAdmin(Subscription, django_admin.site)
    assert "cancel_subscriptions" in model_admin.get_actions(request)
    model_admin.cancel_subscriptions(request, Subscription.objects.filter(pk=sub.pk))
    sub.refresh_from_db()
    assert sub.status == "canceled"
    assert Event.objects.filter(type="subscription.canceled", data__object__id=sub.id).count() == 1


def test_payment_methods_answer_as_a_list(merchant_client, merchant, make_merchant_client):
    """CONTRACT "Requests": every resource answers GET /v1/<resources> as a list; before,
    GET /v1/payment_methods was 404 `Unrecognized request URL` though pm_… ids answer by id."""
    first = saved(merchant)
    second = saved(merchant)
    once = PaymentMethod.objects.create(merchant=merchant, card_brand="visa", card_last4="4242")
    gone = saved(merchant, first.customer)
    PaymentMethod.objects.filter(pk=gone.pk).update(detached_at=timezone.now())
    r = merchant_client.get("/v1/payment_methods")
    assert r.status_code == 200, r.content
    page = r.json()
    assert page["object"] == "list" and page["has_more"] is False
    assert [pm["id"] for pm in page["data"]] == [once.id, second.id, first.id]  # newest first, no detached one
    assert page["data"][1] == merchant_client.get(f"/v1/payment_methods/{second.id}").json()
    assert [pm["id"] for pm in merchant_client.get(
        f"/v1/payment_methods?limit=1&starting_after={second.id}").json()["data"]] == [first.id]
    mine = merchant_client.get(f"/v1/payment_methods?customer={first.customer_id}&include_detached=true").json()
    assert [pm["id"] for pm in mine["data"]] == [gone.id, first.id]
    # both lists read the flag alike: anything but true/1/false/0 once is 400, never silently false
    for url in ("/v1/payment_methods", f"/v1/customers/{first.customer_id}/payment_methods"):
        for bad in ("yes", "TRUE", ""):
            answer = merchant_client.get(url, {"include_detached": bad})
            assert answer.status_code == 400 and answer.json()["error"]["param"] == "include_detached", (url, bad)
        assert merchant_client.get(url, {"include_detached": "1"}).status_code == 200
    # another merchant sees none of them, and cannot name this merchant's customer
    _, other = make_merchant_client()
    assert other.get("/v1/payment_methods").json()["data"] == []
    assert other.get(f"/v1/payment_methods?customer={first.customer_id}").status_code == 404


def test_an_expired_saved_card_is_refused_at_create_and_update_before_anything_is_written(merchant_client,
                                                                                          merchant):
    """A saved card past its expiry date was accepted by POST /v1/subscriptions (201, a
    subscription and `subscription.created` stored) and by POST /v1/subscriptions/{id} (the
    merchant's "new card" stored), although every charge with it is refused before the PSP
    (`expired_card`, a hard failure): the subscription was `unpaid` from birth, or at its next
    charge, and the merchant learnt it only then. Now both are 400 `expired_card`
    (`param: payment_method`) before anything is stored, as a payment with that card is."""
    today = timezone.now().date()
    expired = saved(merchant)
    expired.card_exp_month, expired.card_exp_year = (today.month - 2) % 12 + 1, today.year - 1
    expired.save(update_fields=["card_exp_month", "card_exp_year"])  # its date passed since it was saved
    r = merchant_client.post("/v1/subscriptions", body(expired), format="json")
    assert r.status_code == 400, r.content
    assert r.json()["error"]["code"] == "expired_card" and r.json()["error"]["param"] == "payment_method"
    assert not Subscription.objects.exists() and not SubscriptionCharge.objects.exists()

    shown = merchant_client.get(f"/v1/payment_methods/{expired.id}").json()
    assert shown["reusable"] is False  # it said true, and every off-session use of it was refused

    sub = Subscription.objects.create(merchant=merchant, customer=expired.customer,
                                      payment_method=saved(merchant, expired.customer), amount=900, currency="EUR",
                                      interval="month", anchor=timezone.now(), next_charge_at=timezone.now())
    r = merchant_client.post(f"/v1/subscriptions/{sub.id}", {"payment_method": expired.id}, format="json")
    assert r.status_code == 400, r.content
    assert r.json()["error"]["code"] == "expired_card" and r.json()["error"]["param"] == "payment_method"
    sub.refresh_from_db()
    assert sub.payment_method_id != expired.id
    assert not Event.objects.filter(type="subscription.updated").exists()


def test_a_customer_filter_naming_no_customer_of_the_merchant_is_404_not_an_empty_list(
    merchant_client, merchant, make_merchant_client
):
    """`GET /v1/subscriptions?customer=cus_typo` (or another merchant's customer) answered an empty
    list: a support agent looking up a customer's subscriptions with a mistyped id read "this
    customer has none" and set up a second one. `GET /v1/payment_methods?customer=` already
    answers 404 for a customer the merchant does not have; the subscription list now does too
    (param `customer`), and another merchant's customer is 404 as if it did not exist."""
    pm = saved(merchant)
    Subscription.objects.create(merchant=merchant, customer=pm.customer, payment_method=pm, amount=900,
                                currency="EUR", interval="week", anchor=timezone.now())
    r = merchant_client.get("/v1/subscriptions", {"customer": pm.customer_id + "x"})
    assert r.status_code == 404, r.content
    assert r.json()["error"]["param"] == "customer"
    _other, other_client = make_merchant_client()
    r = other_client.get("/v1/subscriptions", {"customer": pm.customer_id})
    assert r.status_code == 404 and r.json()["error"]["param"] == "customer"
    got = merchant_client.get("/v1/subscriptions", {"customer": pm.customer_id}).json()["data"]
    assert [s["customer"] for s in got] == [pm.customer_id]


def test_a_flagged_subscription_whose_first_period_is_not_paid_shows_its_charge_not_an_end(merchant_client, merchant):
    """Created with `cancel_at_period_end: true`, its first charge still under way (an asynchronous
    PSP): no period is paid, so nothing ends yet — `cancel_at` was the creation time and
    `next_charge_at` null, as if it were over. It shows the charge being made, no `cancel_at`."""
    pm = saved(merchant)
    now = timezone.now()
    sub = Subscription.objects.create(merchant=merchant, customer=pm.customer, payment_method=pm, amount=900,
                                      currency="EUR", interval="month", anchor=now, next_charge_at=now,
                                      cancel_at_period_end=True)
    got = merchant_client.get(f"/v1/subscriptions/{sub.id}").json()
    assert (got["cancel_at_period_end"], got["cancel_at"]) == (True, None)
    assert got["next_charge_at"] == int(now.timestamp())
