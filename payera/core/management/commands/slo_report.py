"""`manage.py slo_report [--since …] [--until …] [--json] [--prometheus URL] [--views REGEX]`

Computes the SLOs of docs/slo.md for a period (default: the last 30 days): merchant webhook
delivery from the stored deliveries, API availability and latency from Prometheus.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from payera.core import slo


def parse_moment(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"not a date or datetime: {value!r} (use YYYY-MM-DD or ISO 8601)")
        moment = datetime(day.year, day.month, day.day)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    return moment


class Command(BaseCommand):
    help = "Compute the service level objectives (docs/slo.md) for a period."

    def add_arguments(self, parser):
        parser.add_argument("--since", help="start (YYYY-MM-DD or ISO 8601, UTC if no zone); default: until - 30 days")
        parser.add_argument("--until", help="end, exclusive; default: now")
        parser.add_argument("--json", action="store_true", help="print only JSON")
        parser.add_argument("--prometheus", default=None, help="Prometheus base URL (default: SLO_PROMETHEUS_URL)")
        parser.add_argument("--views", default=".*", help="view-name regex for the API SLOs (e.g. 'payment.*')")

    def handle(self, *args, **opts):
        now = timezone.now()
        until = parse_moment(opts["until"]) if opts["until"] else now
        since = parse_moment(opts["since"]) if opts["since"] else until - timedelta(days=30)
        if since >= until:
            raise CommandError("--since must be before --until")
        url = opts["prometheus"] if opts["prometheus"] is not None else settings.SLO_PROMETHEUS_URL
        report = {
            "since": since.isoformat(),
            "until": until.isoformat(),
            "webhooks": slo.webhook_slo(since=since, until=until, now=now),
            "api": slo.api_slo(since=since, until=until, prometheus_url=url, view_regex=opts["views"]),
        }
        if opts["json"]:
            self.stdout.write(json.dumps(report, default=str))
            return
        self.stdout.write(f"SLO report {report['since']} .. {report['until']}")
        w = report["webhooks"]
        self.stdout.write(
            f"webhooks: {w['deliveries']} deliveries, {w['delivered_within_target']} within 60s, "
            f"p50 {w['p50_seconds']}s, p99 {w['p99_seconds']}s -> "
            f"{'MET' if w['met'] else 'MISSED' if w['met'] is False else 'no data'} "
            f"(excluded: {w['excluded_merchant_endpoint_failing']} merchant endpoint failing, "
            f"{w['excluded_too_recent']} too recent)"
        )
        a = report["api"]
        if not a["available"]:
            self.stdout.write(f"api: not computed: {a['reason']}")
        else:
            self.stdout.write(
                f"api: {a['requests']} requests, {a['errors_5xx']} 5xx, availability {a['availability']} "
                f"(target {a['availability_target']}), p99 {a['p99_seconds']}s (target < {a['p99_target_seconds']}s)"
            )
