"""`manage.py create_merchant NAME --connectors alpha,beta --json` → {"merchant": "mer_…", "api_key": "sk_test_…"}"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from payera.core.errors import PayeraError
from payera.merchants.models import ApiKeyScope
from payera.merchants.services import api_key_create, merchant_create


class Command(BaseCommand):
    help = "Create a merchant and its first (write) API key. The key is printed once."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--connectors",
            default=None,
            help="Comma-separated PSP connectors in routing order (default: all configured, in settings order).",
        )
        parser.add_argument("--currency", default="EUR", help="Default currency (ISO 4217).")
        parser.add_argument("--settlement-delay-days", type=int, default=2)
        parser.add_argument("--fee-schedule", default="standard")
        parser.add_argument("--scope", choices=ApiKeyScope.values, default=ApiKeyScope.WRITE)
        parser.add_argument("--json", action="store_true", help="Print only JSON.")

    def handle(self, *args, **opts):
        connectors = opts["connectors"].split(",") if opts["connectors"] is not None else None
        try:
            merchant = merchant_create(
                name=opts["name"],
                connectors=connectors,
                default_currency=opts["currency"],
                settlement_delay_days=opts["settlement_delay_days"],
                fee_schedule=opts["fee_schedule"],
            )
            created = api_key_create(merchant=merchant, scope=opts["scope"], name="initial")
        except PayeraError as exc:
            raise CommandError(exc.message) from exc
        if opts["json"]:
            self.stdout.write(json.dumps({"merchant": merchant.id, "api_key": created.secret}))
            return
        self.stdout.write(f"Merchant {merchant.id} ({merchant.name}), connectors: {', '.join(merchant.connectors)}")
        self.stdout.write(f"API key {created.api_key.id} ({created.api_key.scope}), shown only now:")
        self.stdout.write(f"  {created.secret}")
