"""Rebuild every account's balance projection from its entries."""

import json

from django.core.management.base import BaseCommand

from ledger.services import ledger_rebuild


class Command(BaseCommand):
    help = "Recompute account balances, pending amounts and versions from the journal."

    def handle(self, *args, **options):
        self.stdout.write(json.dumps({"accounts_rebuilt": ledger_rebuild()}))
