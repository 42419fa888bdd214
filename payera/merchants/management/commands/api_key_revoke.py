"""`manage.py api_key_revoke key_… --json`"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from payera.core.errors import PayeraError
from payera.merchants.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key now: every request with it answers 401 from then on."

    def add_arguments(self, parser):
        parser.add_argument("api_key", help="API key id (key_…), not the secret.")
        parser.add_argument("--json", action="store_true", help="Print only JSON.")

    def handle(self, *args, **opts):
        try:
            key = api_key_revoke(api_key_id=opts["api_key"])
        except PayeraError as exc:
            raise CommandError(exc.message) from exc
        data = {
            "id": key.id,
            "merchant": key.merchant_id,
            "revoked": True,
            "revoked_at": int(key.revoked_at.timestamp()),
        }
        if opts["json"]:
            self.stdout.write(json.dumps(data))
            return
        self.stdout.write(f"API key {key.id} ({key.prefix}…) revoked.")
