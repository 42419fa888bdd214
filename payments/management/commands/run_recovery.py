import json

from django.core.management.base import BaseCommand

from payments.services import psp_webhook_process_due, recovery_run


class Command(BaseCommand):
    help = "Resolve attempts (and captures/refunds) with an unknown outcome now, by asking the PSPs."

    def add_arguments(self, parser):
        parser.add_argument("--due-only", action="store_true", help="Only what the schedule says is due.")

    def handle(self, *args, **opts):
        counts = recovery_run(force=not opts["due_only"])
        counts["webhooks"] = psp_webhook_process_due()
        self.stdout.write(json.dumps(counts))
