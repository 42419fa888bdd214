"""What each role may see and do in the back office today (merchants, API keys, events and
webhook deliveries, the dashboard), and merchant limits by URL, list and action."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote

from payera.backoffice.scoping import MERCHANT_FIELD_OVERRIDES, merchant_field_for
from payera.events.models import DeliveryStatus, WebhookDelivery
from payera.merchants.models import ApiKey, Merchant
from payera.staff.admin import MerchantScopedAdminMixin
from tests.backoffice.staff import make_staff, otp_force_login

pytestmark = pytest.mark.django_db

DELIVERIES = "/admin/events/webhookdelivery/"
MERCHANTS = "/admin/merchants/merchant/"


def merchant_url(merchant) -> str:
    return f"{MERCHANTS}{quote(merchant.pk)}/change/"


def delivery_url(delivery) -> str:
    return f"{DELIVERIES}{quote(delivery.pk)}/change/"


# the second POST of an action: the reason page confirmed (payera.backoffice.actions)
CONFIRMED = {"confirm": "yes", "reason": "ticket 4711, merchant asked"}


def as_user(client, user):
    return otp_force_login(client, user)


def shown(page) -> set[str]:
    return {str(obj.pk) for obj in page.context["cl"].result_list}


@pytest.mark.parametrize("role", ["support", "operations", "finance", "admin"])
def test_every_role_opens_the_dashboard_merchants_and_deliveries(client, role_users, world, role):
    as_user(client, role_users[role])
    assert client.get("/admin/").status_code == 200
    for url in (MERCHANTS, merchant_url(world["A"].merchant), DELIVERIES, delivery_url(world["A"].dead_delivery),
                "/admin/events/event/", "/admin/events/webhookendpoint/"):
        assert client.get(url).status_code == 200, url


def test_support_can_view_but_not_act(client, role_users, world):
    as_user(client, role_users["support"])
    page = client.get(DELIVERIES)
    assert b"replay_deliveries" not in page.content
    client.post(DELIVERIES, {"action": "replay_deliveries", "_selected_action": [world["A"].dead_delivery.pk],
                             **CONFIRMED})
    assert WebhookDelivery.objects.get(pk=world["A"].dead_delivery.pk).status == DeliveryStatus.DEAD
    merchant = world["A"].merchant
    client.post(MERCHANTS, {"action": "suspend", "_selected_action": [merchant.pk], **CONFIRMED})
    assert Merchant.objects.get(pk=merchant.pk).status == "active"
    detail = client.get(merchant_url(merchant))
    assert b'name="_save"' not in detail.content  # read-only page
    assert client.post(merchant_url(merchant), {"name": "renamed"}).status_code == 403
    assert client.get("/admin/merchants/apikey/").status_code == 403  # keys are not support's business
    assert client.get("/admin/auth/user/").status_code == 403
    assert client.get("/admin/audit/securityevent/").status_code == 403


def test_operations_replays_a_dead_letter_of_its_merchant(client, role_users, world, _local_secrets_and_no_broker):
    as_user(client, role_users["operations"])
    assert b"replay_deliveries" in client.get(DELIVERIES).content
    selected = [world["A"].dead_delivery.pk]
    page = client.post(DELIVERIES, {"action": "replay_deliveries", "_selected_action": selected})
    assert page.status_code == 200 and b'name="reason"' in page.content  # asks why first
    assert WebhookDelivery.objects.get(pk=selected[0]).status == DeliveryStatus.DEAD
    no_reason = client.post(DELIVERIES, {"action": "replay_deliveries", "_selected_action": selected, "confirm": "yes"})
    assert no_reason.status_code == 200 and b"This field is required" in no_reason.content
    response = client.post(DELIVERIES, {"action": "replay_deliveries", "_selected_action": selected, **CONFIRMED})
    assert response.status_code == 302
    delivery = WebhookDelivery.objects.get(pk=world["A"].dead_delivery.pk)
    assert (delivery.status, delivery.replay_count) == (DeliveryStatus.PENDING, 1)
    from payera.backoffice.models import StaffAction

    [record] = StaffAction.objects.filter(object_id=selected[0])
    assert (record.action, record.reason, record.outcome, record.user, record.merchant_id) == (
        "events.replay_delivery", CONFIRMED["reason"], "done", role_users["operations"], world["A"].merchant.pk)


def test_operations_can_not_replay_another_merchants_delivery_by_posting_its_id(client, role_users, world):
    as_user(client, role_users["operations"])
    client.post(DELIVERIES, {"action": "replay_deliveries", "_selected_action": [world["B"].dead_delivery.pk],
                             **CONFIRMED})
    assert WebhookDelivery.objects.get(pk=world["B"].dead_delivery.pk).status == DeliveryStatus.DEAD


def test_operations_can_not_suspend_merchants_or_revoke_keys(client, role_users, world):
    as_user(client, role_users["operations"])
    client.post(MERCHANTS, {"action": "suspend", "_selected_action": [world["A"].merchant.pk], **CONFIRMED})
    assert Merchant.objects.get(pk=world["A"].merchant.pk).status == "active"
    assert client.get("/admin/merchants/apikey/").status_code == 403


@pytest.mark.parametrize("role", ["support", "operations", "finance"])
def test_staff_limited_to_merchant_a_can_not_reach_merchant_b(client, role_users, world, role):
    as_user(client, role_users[role])
    a, b = world["A"], world["B"]
    assert shown(client.get(MERCHANTS)) == {a.merchant.pk}
    assert shown(client.get(DELIVERIES)) == {a.dead_delivery.pk}
    assert shown(client.get("/admin/events/webhookendpoint/")) == {a.endpoint.endpoint.pk}
    for url in (merchant_url(b.merchant), delivery_url(b.dead_delivery),
                f"/admin/events/webhookendpoint/{quote(b.endpoint.endpoint.pk)}/change/",
                f"/admin/events/event/{quote(b.dead_delivery.event_id)}/change/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"] == "/admin/", url  # "does not exist"
        assert b.merchant.name.encode() not in client.get("/admin/").content
    assert b"Merchant B" not in client.get(MERCHANTS + "?q=Merchant").content


def test_admin_role_sees_every_merchant_and_acts(client, role_users, world):
    as_user(client, role_users["admin"])
    assert shown(client.get(MERCHANTS)) == {world["A"].merchant.pk, world["B"].merchant.pk}
    client.post("/admin/merchants/apikey/", {"action": "revoke", "_selected_action": [world["B"].api_key.api_key.pk],
                                            **CONFIRMED})
    assert ApiKey.objects.get(pk=world["B"].api_key.api_key.pk).revoked_at is not None


def test_staff_without_a_role_or_a_grant_sees_nothing(client, world):
    nobody = make_staff("nobody")
    as_user(client, nobody)
    assert client.get("/admin/").status_code == 200  # the index, with nothing on it
    for url in (MERCHANTS, DELIVERIES, merchant_url(world["A"].merchant)):
        assert client.get(url).status_code == 403, url


def test_a_role_without_a_merchant_grant_sees_no_merchant(client, world):
    support = make_staff("lonely", role="support")
    as_user(client, support)
    assert shown(client.get(MERCHANTS)) == set()
    assert client.get(merchant_url(world["A"].merchant)).status_code == 302


# --- scoping is a rule of the site ----------------------------------------------------------------
def test_every_registered_admin_of_a_merchant_owned_model_is_scoped():
    """Walks the admin registry: a domain app's admin is covered the day it is registered."""
    owned = {model: merchant_field_for(model) for model in admin.site._registry if merchant_field_for(model)}
    self_scoped = {label for label, field in MERCHANT_FIELD_OVERRIDES.items() if field is None}
    assert self_scoped == {"audit.auditlogentry"}  # payera.audit.admin filters on object_merchant_id
    assert {m._meta.label for m in owned} >= {
        "merchants.Merchant", "merchants.ApiKey", "events.Event", "events.WebhookDelivery", "events.WebhookEndpoint",
    }
    for model, field in owned.items():
        model_admin = admin.site._registry[model]
        assert isinstance(model_admin, MerchantScopedAdminMixin), model
        assert model_admin.merchant_field in (field, "pk"), model


def test_an_admin_registered_later_is_scoped_too(db):
    from django.contrib.admin import ModelAdmin

    from payera.backoffice.sites import BackofficeAdminSite

    site = BackofficeAdminSite(name="scratch")
    site.register(WebhookDelivery, ModelAdmin)
    site.register(ApiKey)
    assert site._registry[WebhookDelivery].merchant_field == "merchant_id"
    assert site._registry[ApiKey].merchant_field == "merchant_id"


# --- suspending merchants and revoking keys: their own permission, and a reason ---------------------
def test_suspend_and_revoke_ask_why_need_their_permission_and_are_recorded(client, role_users, world):
    from payera.backoffice.models import StaffAction

    merchant, key = world["A"].merchant, world["A"].api_key.api_key
    for role in ("support", "operations", "finance"):
        assert not role_users[role].has_perm("merchants.suspend_merchant")
        assert not role_users[role].has_perm("merchants.revoke_apikey")
    as_user(client, role_users["finance"])  # may see the merchant, may not suspend it
    assert b'value="suspend"' not in client.get(MERCHANTS).content
    client.post(MERCHANTS, {"action": "suspend", "_selected_action": [merchant.pk], **CONFIRMED})
    assert Merchant.objects.get(pk=merchant.pk).status == "active"

    as_user(client, role_users["admin"])
    page = client.post(MERCHANTS, {"action": "suspend", "_selected_action": [merchant.pk]})
    assert page.status_code == 200 and b'name="reason"' in page.content  # asks why first
    assert Merchant.objects.get(pk=merchant.pk).status == "active"
    client.post(MERCHANTS, {"action": "suspend", "_selected_action": [merchant.pk], **CONFIRMED})
    assert Merchant.objects.get(pk=merchant.pk).status == "suspended"
    client.post("/admin/merchants/apikey/", {"action": "revoke", "_selected_action": [key.pk], **CONFIRMED})
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    records = {(r.action, r.object_id, r.outcome, r.reason) for r in StaffAction.objects.all()}
    assert records == {("merchants.suspend", merchant.pk, "done", CONFIRMED["reason"]),
                       ("merchants.revoke_api_key", key.pk, "done", CONFIRMED["reason"])}
    # suspending twice is refused by the state machine, and recorded as refused
    client.post(MERCHANTS, {"action": "suspend", "_selected_action": [merchant.pk], **CONFIRMED})
    assert StaffAction.objects.filter(action="merchants.suspend", outcome="refused").count() == 1


def test_the_psp_inbox_is_for_staff_who_see_every_merchant(client, role_users):
    as_user(client, role_users["operations"])  # limited to merchant A
    assert client.get("/admin/payments/pspwebhook/").status_code == 403
    as_user(client, role_users["admin"])
    assert client.get("/admin/payments/pspwebhook/").status_code == 200
