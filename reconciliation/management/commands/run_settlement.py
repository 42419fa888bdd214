"""Run merchant settlement now (the scheduler runs it daily)."""

import json

from django.core.management.base import BaseCommand, CommandError

from payera.merchants.models import Merchant
from reconciliation.services import settlement_run


class Command(BaseCommand):
    help = "Move captured funds older than each merchant's settlement delay from pending to available."

    def add_arguments(self, parser):
        parser.add_argument("--merchant", help="only this merchant (mer_…)")
        parser.add_argument("--json", action="store_true", help="print a JSON report")

    def handle(self, *args, **options):
        if options["merchant"] is not None and not Merchant.objects.filter(pk=options["merchant"]).exists():
            raise CommandError(f"no merchant {options['merchant']!r}: nothing was settled")
        outcomes = settlement_run(merchant_id=options["merchant"])
        body = {
            "runs": [o.as_dict() for o in outcomes],
            "settled": sum(1 for o in outcomes if o.created and o.status == "settled"),
            "moved": {},
        }
        for o in outcomes:  # what this call moved (0 for a cutoff already run)
            body["moved"][o.currency] = body["moved"].get(o.currency, 0) + (o.amount if o.created else 0)
        if options["json"]:
            self.stdout.write(json.dumps(body))
            return
        for o in outcomes:
            state = o.status if o.created else "already run"
            self.stdout.write(f"{o.merchant_id} {o.currency} {o.cutoff_date}: {state}, moved {o.amount}")
        self.stdout.write(f"{len(outcomes)} merchant currencies, moved {body['moved']}")
