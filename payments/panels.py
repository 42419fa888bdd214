"""Dashboard panels of the payments app (indexed counts, scoped to the staff member's merchants)."""

from __future__ import annotations

from payera.backoffice.panels import Metric
from payera.staff.access import staff_filter_merchants
from payments.models import StuckItem


def stuck_panel(request) -> list[Metric]:
    open_ = staff_filter_merchants(request.user, StuckItem.objects.filter(cleared_at__isnull=True))
    flagged = open_.filter(flagged_at__isnull=False).count()
    redriving = open_.filter(flagged_at__isnull=True).count()
    base = "/admin/payments/stuckitem/?cleared_at__isempty=1"
    return [
        Metric("flagged for operations", flagged, f"{base}&flagged_at__isempty=0", "bad" if flagged else "ok"),
        Metric("being re-driven", redriving, f"{base}&flagged_at__isempty=1", "warn" if redriving else "ok"),
    ]
