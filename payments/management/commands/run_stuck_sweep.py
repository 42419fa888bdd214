import json

from django.core.management.base import BaseCommand

from payments.services import stuck_sweep


class Command(BaseCommand):
    help = ("Re-drive what is stuck in a non-final state past its SLA and flag what stays stuck "
            "(admin: Stuck items). Prints the counts as JSON.")

    def handle(self, *args, **opts):
        self.stdout.write(json.dumps(stuck_sweep()))
