"""The dashboard on the admin index: panels by permission, scoped to the user's merchants,
pluggable by any app, and a broken panel does not break the page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from payera.audit.services import record_auth_failure
from payera.backoffice.panels import Metric, Panel, panel_register, panel_unregister, panels_registered
from payera.merchants.models import ApiKey
from tests.backoffice.staff import make_staff, otp_force_login

pytestmark = pytest.mark.django_db


def panel_values(page) -> dict[str, dict[str, object]]:
    return {panel.key: {m.label: m.value for m in panel.metrics} for panel in page.context["panels"]}


def test_built_in_panels_are_registered_in_order():
    assert [p.key for p in panels_registered()][:3] == ["events.webhooks", "audit.security", "merchants.api_keys"]


def test_admin_sees_every_panel_with_numbers_of_every_merchant(client, role_users, world):
    ApiKey.objects.filter(pk=world["B"].api_key.api_key.pk).update(expires_at=timezone.now() + timedelta(days=3))
    record_auth_failure(kind="staff_login", identifier="x", reason="locked_out", remote_addr=None, request_id=None)
    record_auth_failure(kind="api_key", identifier="sk_test_x", reason="unknown_key", remote_addr=None, request_id=None)
    otp_force_login(client, role_users["admin"])
    values = panel_values(client.get("/admin/"))
    assert values["events.webhooks"]["dead letters"] == 2
    assert values["audit.security"]["staff lockouts"] == 1
    assert values["audit.security"]["rejected API keys"] == 1
    assert values["merchants.api_keys"]["expiring in 14 days"] == 1


def test_limited_staff_see_only_their_merchants_numbers_and_permitted_panels(client, role_users, world):
    from payments.models import StuckItem

    for key in ("A", "B"):  # one flagged stuck payment per merchant
        StuckItem.objects.create(merchant=world[key].merchant, object_type="payment", object_id=f"pay_{key}",
                                 state="in_review", since=timezone.now(), sla_seconds=0, reason="review",
                                 flagged_at=timezone.now())
    otp_force_login(client, role_users["support"])
    values = panel_values(client.get("/admin/"))
    assert set(values) == {"events.webhooks", "payments.stuck"}  # no audit or API key reading for support
    assert values["events.webhooks"]["dead letters"] == 1
    assert values["payments.stuck"]["flagged for operations"] == 1  # merchant A's only


def test_staff_without_permissions_see_no_panel(client, db):
    otp_force_login(client, make_staff("nobody"))
    page = client.get("/admin/")
    assert page.status_code == 200 and page.context["panels"] == []


def test_an_app_plugs_in_a_panel_and_a_failing_panel_shows_unavailable(client, superuser):
    panel_register(Panel(key="test.ok", title="Unknown outcomes", order=1, permissions=("auth.view_user",),
                         compute=lambda request: [Metric("attempts", 3, level="bad")]))
    panel_register(Panel(key="test.broken", title="Broken", order=2, compute=lambda request: 1 / 0))
    try:
        otp_force_login(client, superuser)
        page = client.get("/admin/")
        keys = [panel.key for panel in page.context["panels"]]
        assert keys[:2] == ["test.ok", "test.broken"]
        assert b"Unknown outcomes" in page.content and b"unavailable" in page.content
    finally:
        panel_unregister("test.ok")
        panel_unregister("test.broken")
