"""Record what the bank said about a payout: `payout_mark --paid po_…`, `--failed po_… [--reason]`,
or `--returned po_… [--reason]` (paid, then sent back by the bank)."""

import json

from django.core.management.base import BaseCommand, CommandError

from payera.core.errors import PayeraError
from reconciliation.objects import payout_object
from reconciliation.services import (
    payout_mark_failed,
    payout_mark_in_transit,
    payout_mark_paid,
    payout_mark_returned,
)


class Command(BaseCommand):
    help = ("Mark a payout in transit, paid, failed or returned (failed and returned give the money back to "
            "available).")

    def add_arguments(self, parser):
        parser.add_argument("payout", help="po_…")
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--in-transit", action="store_true")
        group.add_argument("--paid", action="store_true")
        group.add_argument("--failed", action="store_true")
        group.add_argument("--returned", action="store_true",
                           help="a paid payout the bank sent back: failed, its money back to available")
        parser.add_argument("--reason", default="",
                            help="with --failed or --returned: why (e.g. the bank's return code)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        try:
            if options["paid"]:
                payout = payout_mark_paid(payout_id=options["payout"])
            elif options["returned"]:
                payout = payout_mark_returned(payout_id=options["payout"], reason=options["reason"])
            elif options["failed"]:
                payout = payout_mark_failed(payout_id=options["payout"], reason=options["reason"])
            else:
                payout = payout_mark_in_transit(payout_id=options["payout"])
        except PayeraError as exc:
            raise CommandError(exc.message) from None
        body = payout_object(payout)
        self.stdout.write(json.dumps(body) if options["json"] else f"{payout.id}: {payout.status}")
