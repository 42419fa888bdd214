"""Write a payout's settlement statement (CSV) to stdout: every ledger transaction it carries."""

from django.core.management.base import BaseCommand, CommandError

from reconciliation.exports import payout_statement_csv
from reconciliation.models import Payout
from reconciliation.selectors import payout_statement


class Command(BaseCommand):
    help = "Print the settlement statement of a payout as CSV."

    def add_arguments(self, parser):
        parser.add_argument("payout", help="po_…")

    def handle(self, *args, **options):
        payout = Payout.objects.filter(pk=options["payout"]).first()
        if payout is None:
            raise CommandError(f"No such payout: {options['payout']}")
        self.stdout.write(payout_statement_csv(payout_statement(payout=payout)), ending="")
