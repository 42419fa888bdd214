"""Dashboard panels: payouts waiting, in transit, failed lately (indexed counts, merchant-scoped); settlement
report days whose pulled file keeps failing to import (flagged for operations)."""

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


def settlement_pull_panel(request) -> list[Metric]:
    """The (PSP, day) pairs whose pulled settlement report failed RECONCILIATION_PULL_ALERT_AFTER_FAILURES
    nights or more without a scheduled import of the day done since (runbook reconciliation-pull-failing.md)."""
    from reconciliation.services.reconcile import pull_failing_days

    failing = pull_failing_days()
    days = ", ".join(f"{psp} {day.isoformat()}" for psp, day in failing[:5])
    return [
        Metric("days failing to import", len(failing), "/admin/reconciliation/reconciliationrun/?status__exact=failed",
               "bad" if failing else "ok"),
        *([Metric("oldest", days)] if failing else []),
    ]


def pull_failing_gauges():
    """`payera_reconciliation_pull_failing_days` per PSP, computed at scrape time (alert
    ReconciliationPullFailing, docs/slo.md)."""
    from prometheus_client.core import GaugeMetricFamily

    from psp_adapters.registry import connector_names
    from reconciliation.services.reconcile import pull_failing_days

    counts = dict.fromkeys(connector_names(), 0)
    for psp, _ in pull_failing_days():
        counts[psp] = counts.get(psp, 0) + 1
    gauge = GaugeMetricFamily("payera_reconciliation_pull_failing_days",
                              "Days whose pulled settlement report failed to import for "
                              "RECONCILIATION_PULL_ALERT_AFTER_FAILURES nights or more, per PSP.", labels=["psp"])
    for psp, n in sorted(counts.items()):
        gauge.add_metric([psp], n)
    yield gauge
