"""`manage.py merchant_suspend mer_… [--reactivate] --json`"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from payera.core.errors import PayeraError
from payera.merchants.services import merchant_reactivate, merchant_suspend


class Command(BaseCommand):
    help = "Suspend a merchant (its API keys answer 401) or, with --reactivate, lift the suspension."

    def add_arguments(self, parser):
        parser.add_argument("merchant", help="Merchant id (mer_…).")
        parser.add_argument("--reactivate", action="store_true")
        parser.add_argument("--json", action="store_true", help="Print only JSON.")

    def handle(self, *args, **opts):
        action = merchant_reactivate if opts["reactivate"] else merchant_suspend
        try:
            merchant = action(merchant_id=opts["merchant"])
        except PayeraError as exc:
            raise CommandError(exc.message) from exc
        if opts["json"]:
            self.stdout.write(json.dumps({"merchant": merchant.id, "status": merchant.status}))
            return
        self.stdout.write(f"Merchant {merchant.id} is {merchant.status}.")
