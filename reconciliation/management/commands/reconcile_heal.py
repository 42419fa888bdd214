"""The late heal now: `manage.py reconcile_heal [--max-age-days N] [--limit N] [--json]`
(docs/reconciliation.md, "Late heal")."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from reconciliation.services import reconcile_reheal


class Command(BaseCommand):
    help = ('Ask the PSPs again about the open "missing in Payera" settlement report lines and settle those '
            "that now match.")  # fmt: skip

    def add_arguments(self, parser):
        parser.add_argument("--max-age-days", type=int, default=None,
                            help="only lines of runs younger than this (default RECONCILIATION_REHEAL_MAX_AGE_DAYS)")
        parser.add_argument("--limit", type=int, default=None,
                            help="at most this many lines (default RECONCILIATION_REHEAL_LIMIT)")
        parser.add_argument("--json", action="store_true", help="print the counts as JSON")

    MAX_AGE_DAYS = 36_500  # a window past this reaches before the calendar's start

    def handle(self, *args, **options):
        days, limit = options["max_age_days"], options["limit"]
        if days is not None and not 1 <= days <= self.MAX_AGE_DAYS:
            raise CommandError(f"--max-age-days must be 1-{self.MAX_AGE_DAYS}")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        result = reconcile_reheal(max_age_days=options["max_age_days"], limit=options["limit"]).as_dict()
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(
            f"{result['lines']} line(s) missing in Payera looked at, {result['asked']} inquiry(ies) at the PSPs: "
            f"{result['healed']} healed (settled), {result['reclassified']} of another kind now, "
            f"{result['still_open']} still open"
        )
