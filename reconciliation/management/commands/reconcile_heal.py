"""The late heal now: `manage.py reconcile_heal [--max-age-days N] [--limit N] [--json]`
(docs/reconciliation.md, "Late heal")."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

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

    def handle(self, *args, **options):
        result = reconcile_reheal(max_age_days=options["max_age_days"], limit=options["limit"]).as_dict()
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(
            f"{result['lines']} line(s) missing in Payera looked at, {result['asked']} inquiry(ies) at the PSPs: "
            f"{result['healed']} healed (settled), {result['reclassified']} of another kind now, "
            f"{result['still_open']} still open"
        )
