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
    builtin = ["events.webhooks", "audit.security", "merchants.api_keys"]
    assert [p.key for p in panels_registered() if p.key in builtin] == builtin


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
    # no audit or API key reading for support; payments' numbers of merchant A only
    assert set(values) == {"events.webhooks", "payments.volume", "payments.authorization_rate",
                           "payments.unknown_outcomes", "payments.stuck"}
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


def test_payments_panels_count_today_per_connector_and_only_the_users_merchants(client, role_users, world,
                                                                                 psp_settings):
    from django.utils import timezone as tz

    from payments.backoffice.services import staff_refund_request
    from payments.models import PaymentAttempt
    from tests.backoffice.payments import APPROVED, pay

    pay(world["A"].merchant, amount=1_000)  # alpha declines (processing_error), beta approves
    paid = pay(world["A"].merchant, amount=2_000, number=APPROVED, connectors=["alpha"])
    pay(world["B"].merchant, amount=4_000, number=APPROVED, connectors=["alpha"])
    other = pay(world["B"].merchant, amount=500, number=APPROVED, connectors=["alpha"], capture_method="manual")
    PaymentAttempt.objects.filter(payment=other).update(status="unknown", created_at=tz.now())
    world["A"].merchant.refund_approval_threshold = 0
    world["A"].merchant.save(update_fields=["refund_approval_threshold"])
    staff_refund_request(user=role_users["finance"], payment_id=paid.pk, amount=100, reason="x" * 10)

    otp_force_login(client, role_users["admin"])
    values = panel_values(client.get("/admin/"))
    assert values["payments.volume"] == {"payments today": 4, "captured EUR": 7_000}
    # alpha decided 3 (one decline; the unknown one is not decided yet), beta 1
    assert values["payments.authorization_rate"] == {"alpha": "66.7 %", "beta": "100.0 %"}
    assert values["payments.unknown_outcomes"] == {"unknown outcomes": 1, "needing attention": 0,
                                                   "refunds awaiting approval": 1}
    otp_force_login(client, role_users["finance"])  # merchant A only
    values = panel_values(client.get("/admin/"))
    assert values["payments.volume"] == {"payments today": 2, "captured EUR": 3_000}
    assert values["payments.authorization_rate"] == {"alpha": "50.0 %", "beta": "100.0 %"}
    assert values["payments.unknown_outcomes"]["unknown outcomes"] == 0
