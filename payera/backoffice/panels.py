"""The dashboard: numbers an on-call person looks at first, as panels on the admin index.

A panel is registered once, by any app (domain apps too, from their `AppConfig.ready()`):

    from payera.backoffice.panels import Panel, Metric, panel_register

    panel_register(Panel(
        key="payments.unknown_outcomes", title="Unknown outcomes", order=20,
        permissions=("payments.view_payment",),
        compute=lambda request: [Metric("attempts", n, url="/admin/payments/...", level="warn")],
    ))

The index shows the panels whose permissions the user holds, in `order`. `compute(request)`
returns metrics; it must scope itself to the user's merchants (`payera.staff.access`) and stay
cheap (indexed counts). A panel that raises shows "unavailable" instead of breaking the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

logger = logging.getLogger("payera.backoffice")


@dataclass(frozen=True, slots=True)
class Metric:
    label: str
    value: int | str
    url: str = ""
    level: str = "ok"  # ok | warn | bad: how the number is shown


@dataclass(frozen=True, slots=True)
class Panel:
    key: str
    title: str
    compute: Callable[..., Sequence[Metric]]
    permissions: tuple[str, ...] = ()
    order: int = 100
    description: str = ""


@dataclass(slots=True)
class RenderedPanel:
    key: str
    title: str
    description: str
    metrics: list[Metric] = field(default_factory=list)
    error: str = ""


_registry: dict[str, Panel] = {}


def panel_register(panel: Panel) -> Panel:
    """Add (or replace, by key) a dashboard panel."""
    _registry[panel.key] = panel
    return panel


def panel_unregister(key: str) -> None:
    _registry.pop(key, None)


def panels_registered() -> list[Panel]:
    return sorted(_registry.values(), key=lambda panel: (panel.order, panel.key))


def panels_for(request) -> list[RenderedPanel]:
    """The panels `request.user` may see, computed."""
    shown = []
    for panel in panels_registered():
        if not all(request.user.has_perm(perm) for perm in panel.permissions):
            continue
        rendered = RenderedPanel(key=panel.key, title=panel.title, description=panel.description)
        try:
            rendered.metrics = list(panel.compute(request))
        except Exception:
            logger.exception("dashboard panel failed", extra={"panel": panel.key})
            rendered.error = "unavailable"
        shown.append(rendered)
    return shown


def _level(value: int, *, warn: int = 1, bad: int | None = None) -> str:
    if bad is not None and value >= bad:
        return "bad"
    return "warn" if value >= warn else "ok"


# --- built-in panels (platform apps only) ---------------------------------------------------------
def webhook_panel(request) -> list[Metric]:
    from payera.events.models import DeliveryStatus, EndpointStatus, WebhookDelivery, WebhookEndpoint
    from payera.staff.access import staff_filter_merchants

    deliveries = staff_filter_merchants(request.user, WebhookDelivery.objects.all())
    endpoints = staff_filter_merchants(request.user, WebhookEndpoint.objects.all())
    dead = deliveries.filter(status=DeliveryStatus.DEAD).count()
    retrying = deliveries.filter(status=DeliveryStatus.FAILED).count()
    failing = endpoints.filter(status=EndpointStatus.ENABLED, consecutive_failures__gt=0).count()
    disabled = endpoints.filter(status=EndpointStatus.DISABLED).count()
    base = "/admin/events/"
    return [
        Metric("dead letters", dead, f"{base}webhookdelivery/?status__exact=dead", _level(dead, bad=1)),
        Metric("deliveries retrying", retrying, f"{base}webhookdelivery/?status__exact=failed", _level(retrying)),
        Metric("endpoints failing", failing, f"{base}webhookendpoint/?status__exact=enabled", _level(failing)),
        Metric("endpoints disabled", disabled, f"{base}webhookendpoint/?status__exact=disabled", _level(disabled)),
    ]


def security_panel(request) -> list[Metric]:
    from payera.audit.models import SecurityEvent

    since = timezone.now() - timedelta(hours=24)
    recent = SecurityEvent.objects.filter(created_at__gte=since)
    staff_failures = recent.filter(event="auth_failure", kind="staff_login").exclude(reason="locked_out").count()
    lockouts = recent.filter(event="auth_failure", kind="staff_login", reason="locked_out").count()
    key_failures = recent.filter(event="auth_failure", kind="api_key").count()
    sign_ins = recent.filter(event="login").count()
    base = "/admin/audit/securityevent/"
    return [
        Metric("staff sign-ins", sign_ins, f"{base}?event__exact=login"),
        Metric("failed staff sign-ins", staff_failures, f"{base}?kind__exact=staff_login&event__exact=auth_failure",
               _level(staff_failures, warn=5, bad=20)),
        Metric("staff lockouts", lockouts, f"{base}?kind__exact=staff_login", _level(lockouts, bad=1)),
        Metric("rejected API keys", key_failures, f"{base}?kind__exact=api_key",
               _level(key_failures, warn=50, bad=500)),
    ]


API_KEY_EXPIRY_WARNING_DAYS = 14


def api_key_panel(request) -> list[Metric]:
    from payera.merchants.models import ApiKey
    from payera.staff.access import staff_filter_merchants

    now = timezone.now()
    live = staff_filter_merchants(request.user, ApiKey.objects.filter(revoked_at__isnull=True))
    soon = live.filter(expires_at__gt=now, expires_at__lte=now + timedelta(days=API_KEY_EXPIRY_WARNING_DAYS)).count()
    expired = live.filter(expires_at__lte=now, expires_at__gt=now - timedelta(days=7)).count()
    return [
        Metric(f"expiring in {API_KEY_EXPIRY_WARNING_DAYS} days", soon, "/admin/merchants/apikey/?o=7", _level(soon)),
        Metric("expired in the last 7 days", expired, "/admin/merchants/apikey/?o=7", _level(expired)),
    ]


def register_builtin_panels() -> None:
    panel_register(Panel(
        key="events.webhooks", title="Merchant webhooks", order=10, compute=webhook_panel,
        permissions=("events.view_webhookdelivery", "events.view_webhookendpoint"),
        description="Dead letters wait for a replay; failing endpoints are disabled after days of failures.",
    ))
    panel_register(Panel(
        key="audit.security", title="Security, last 24 hours", order=50, compute=security_panel,
        permissions=("audit.view_securityevent",),
        description="Staff sign-ins, failures and lockouts; rejected API keys.",
    ))
    panel_register(Panel(
        key="merchants.api_keys", title="API keys", order=60, compute=api_key_panel,
        permissions=("merchants.view_apikey",),
        description="Keys that stop working soon: tell the merchant to roll them.",
    ))
