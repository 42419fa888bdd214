"""Dashboard panel: payouts waiting, in transit, failed lately (indexed counts, merchant-scoped)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from payera.backoffice.panels import Metric
from payera.staff.access import staff_filter_merchants
from reconciliation.models import Payout, PayoutStatus


def payouts_panel(request) -> list[Metric]:
    payouts = staff_filter_merchants(request.user, Payout.objects.all())
    pending = payouts.filter(status=PayoutStatus.PENDING).count()
    in_transit = payouts.filter(status=PayoutStatus.IN_TRANSIT).count()
    failed = payouts.filter(status=PayoutStatus.FAILED, failed_at__gte=timezone.now() - timedelta(days=7)).count()
    base = "/admin/reconciliation/payout/"
    return [
        Metric("pending", pending, f"{base}?status__exact=pending", "warn" if pending else "ok"),
        Metric("in transit", in_transit, f"{base}?status__exact=in_transit"),
        Metric("failed, last 7 days", failed, f"{base}?status__exact=failed", "bad" if failed else "ok"),
    ]
