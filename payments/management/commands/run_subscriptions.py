import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandError

from payments.services import subscriptions_run


class Command(BaseCommand):
    help = ("Charge the subscriptions due now (periods and dunning retries), as the scheduler does. "
            "--now runs the tick at a simulated time (ISO 8601, e.g. 2027-01-01T00:00:00Z).")

    def add_arguments(self, parser):
        parser.add_argument("--now", help="Simulated clock: ISO 8601 date-time (UTC if no offset).")

    def handle(self, *args, **opts):
        at = None
        if opts["now"]:
            try:
                at = dt.datetime.fromisoformat(opts["now"].replace("Z", "+00:00"))
            except ValueError:
                raise CommandError("--now must be an ISO 8601 date-time") from None
            if at.tzinfo is None:
                at = at.replace(tzinfo=dt.UTC)
        self.stdout.write(json.dumps(subscriptions_run(now_=at), sort_keys=True))
