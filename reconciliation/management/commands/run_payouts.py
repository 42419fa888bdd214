"""Create today's payouts, send the pending ones (in transit) and write the bank's payout file."""

import json
import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from payera.merchants.models import Merchant
from reconciliation.exports import payout_file_csv
from reconciliation.services import payout_run, payouts_held, payouts_send


class Command(BaseCommand):
    help = "Create payouts from available balances; with --send, mark pending payouts in transit and write the file."

    def add_arguments(self, parser):
        parser.add_argument("--merchant", help="only this merchant (mer_…)")
        parser.add_argument("--send", action="store_true", help="mark pending payouts in transit")
        parser.add_argument("--file", help="with --send: write the payout file (CSV) here ('-' for stdout)")
        parser.add_argument("--json", action="store_true", help="print a JSON report")

    def _check_file(self, name: str) -> None:
        """Refuse a file that can not be written before any payout is sent: sent payouts are in
        transit and are not sent again, so a file lost after sending is a payout nobody pays. A file
        already there is refused too: it may be an earlier run's, not yet picked up by the bank."""
        path = Path(name)
        if path.exists() or path.is_symlink():
            raise CommandError(
                f"the payout file {name} already exists (an earlier run's, perhaps not yet picked up by the "
                "bank): nothing was sent; give a new name, e.g. with the date"
            )
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise CommandError(f"cannot write the payout file {name}: nothing was sent")

    @staticmethod
    def _write_new(name: str, content: str) -> None:
        """Write the file whole or not at all, never over an existing one: a temporary file in the
        same folder, linked to the name (fails if the name exists), then unlinked."""
        path = Path(name)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, path)
        finally:
            os.unlink(tmp)

    def handle(self, *args, **options):
        merchant_id, file = options["merchant"], options["file"]
        if merchant_id is not None and not Merchant.objects.filter(pk=merchant_id).exists():
            raise CommandError(f"no merchant {merchant_id!r}: nothing was paid out")
        if file and not options["send"]:
            raise CommandError("--file writes the payouts that --send sends: add --send")
        if file and file != "-":
            self._check_file(file)
        outcomes = payout_run(merchant_id=merchant_id)
        sent = payouts_send(merchant_id=merchant_id) if options["send"] else []
        # a suspended merchant's pending payouts (created before its suspension) are not sent
        held = payouts_held(merchant_id=merchant_id)
        if file and sent:
            content = payout_file_csv(sent)
            if file == "-":
                self.stdout.write(content, ending="")
            else:
                try:
                    self._write_new(file, content)
                except OSError as exc:
                    raise CommandError(
                        f"cannot write the payout file {file}: {exc.strerror}. These payouts are in transit "
                        f"and will not be sent again: {', '.join(p.id for p in sent)}; export their bank file "
                        "from the back office (payouts, 'Export the bank file')"
                    ) from None
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
