"""Create today's payouts, send the pending ones (in transit) and write the bank's payout file."""

import json

from django.core.management.base import BaseCommand

from reconciliation.exports import payout_file_csv
from reconciliation.services import payout_run, payouts_held, payouts_send


class Command(BaseCommand):
    help = "Create payouts from available balances; with --send, mark pending payouts in transit and write the file."

    def add_arguments(self, parser):
        parser.add_argument("--merchant", help="only this merchant (mer_…)")
        parser.add_argument("--send", action="store_true", help="mark pending payouts in transit")
        parser.add_argument("--file", help="with --send: write the payout file (CSV) here ('-' for stdout)")
        parser.add_argument("--json", action="store_true", help="print a JSON report")

    def handle(self, *args, **options):
        outcomes = payout_run(merchant_id=options["merchant"])
        sent = payouts_send(merchant_id=options["merchant"]) if options["send"] else []
        # a suspended merchant's pending payouts (created before its suspension) are not sent
        held = payouts_held(merchant_id=options["merchant"])
        if options["file"] and sent:
            content = payout_file_csv(sent)
            if options["file"] == "-":
                self.stdout.write(content, ending="")
            else:
                with open(options["file"], "w", encoding="utf-8", newline="") as fh:
                    fh.write(content)
        body = {"payouts": [o.as_dict() for o in outcomes], "sent": [p.id for p in sent],
                "held": [{"payout": p.id, "merchant": p.merchant_id, "amount": p.amount, "currency": p.currency,
                          "reason": "merchant_suspended"} for p in held]}
        if options["json"]:
            if options["file"] != "-":
                self.stdout.write(json.dumps(body))
            return
        if options["file"] == "-":
            return
        for o in outcomes:
            self.stdout.write(f"{o.merchant_id} {o.currency}: {o.reason} {o.payout_id or ''} {o.amount}")
        for p in held:
            self.stdout.write(f"held: {p.id} {p.amount} {p.currency} of {p.merchant_id} (merchant suspended; "
                              "sent once reinstated)")
        self.stdout.write(f"{sum(o.created for o in outcomes)} created, {len(sent)} sent, {len(held)} held")
