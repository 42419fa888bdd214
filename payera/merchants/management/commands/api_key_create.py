"""`manage.py api_key_create mer_… [--scope read|write] [--expires-in-days N] [--name …] --json`"""

from __future__ import annotations

import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from payera.core.errors import PayeraError
from payera.merchants.models import ApiKeyScope
from payera.merchants.selectors import merchant_get
from payera.merchants.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a merchant (e.g. to roll keys). The secret is printed once."

    def add_arguments(self, parser):
        parser.add_argument("merchant", help="Merchant id (mer_…).")
        parser.add_argument("--scope", choices=ApiKeyScope.values, default=ApiKeyScope.WRITE)
        parser.add_argument("--name", default="")
        parser.add_argument("--expires-in-days", type=int, default=None)
        parser.add_argument("--json", action="store_true", help="Print only JSON.")

    def handle(self, *args, **opts):
        expires_at = None
        if opts["expires_in_days"] is not None:
            if opts["expires_in_days"] <= 0:
                raise CommandError("--expires-in-days must be positive")
            try:
                expires_at = timezone.now() + dt.timedelta(days=opts["expires_in_days"])
            except OverflowError:
                raise CommandError("--expires-in-days is past the end of the calendar") from None
        try:
            merchant = merchant_get(merchant_id=opts["merchant"])
            created = api_key_create(merchant=merchant, scope=opts["scope"], name=opts["name"], expires_at=expires_at)
        except PayeraError as exc:
            raise CommandError(exc.message) from exc
        key = created.api_key
        data = {
            "id": key.id,
            "merchant": merchant.id,
            "api_key": created.secret,
            "scope": key.scope,
            "expires_at": int(key.expires_at.timestamp()) if key.expires_at else None,
        }
        if opts["json"]:
            self.stdout.write(json.dumps(data))
            return
        self.stdout.write(f"API key {key.id} ({key.scope}) for {merchant.id}, shown only now:")
        self.stdout.write(f"  {created.secret}")
