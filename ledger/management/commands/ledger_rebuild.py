"""Rebuild every account's balance projection from its entries; exit 1 if some breach a limit."""

import json
import sys

from django.core.management.base import BaseCommand

from ledger.services import ledger_rebuild


class Command(BaseCommand):
    help = (
        "Recompute account balances, pending amounts and versions from the journal. Accounts whose "
        "replay breaches a limit are not rebuilt but frozen, and the command exits 1."
    )

    def handle(self, *args, **options):
        report = ledger_rebuild()
        self.stdout.write(json.dumps({"accounts_rebuilt": report.rebuilt, "accounts_frozen": list(report.frozen)}))
        if report.frozen:
            self.stderr.write(
                f"ledger_rebuild: the entries of account(s) {', '.join(map(str, report.frozen))} breach their "
                "balance limit (or sum past the bigint range). Their projections were NOT rebuilt (that would "
                "record a breached limit); they "
                "are now FROZEN (postings to them are refused). Every other account was rebuilt. Treat it as a "
                "money incident: docs/runbooks/ledger-verify-failing.md, 'A limit breached by the entries'."
            )
            sys.exit(1)
