import json

from django.core.management.base import BaseCommand

from payments.backoffice.services import refund_approvals_resume
from payments.services import psp_webhook_process_due, recovery_run


class Command(BaseCommand):
    help = "Resolve attempts (and captures/refunds) with an unknown outcome now, by asking the PSPs."

    def add_arguments(self, parser):
        parser.add_argument("--due-only", action="store_true", help="Only what the schedule says is due.")

    def handle(self, *args, **opts):
        counts = recovery_run(force=not opts["due_only"])
        counts["webhooks"] = psp_webhook_process_due()
        # four-eyes refunds approved but not sent (the approver's process died): sent once
        counts["approvals"] = refund_approvals_resume()["approvals"]
        self.stdout.write(json.dumps(counts))
