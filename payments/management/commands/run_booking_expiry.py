import json

from django.core.management.base import BaseCommand

from payments.services.bookings import booking_expire_due


class Command(BaseCommand):
    help = "Expire now every booking whose hold passed its hold_expires_at unconfirmed (voided at the PSP)."

    def handle(self, *args, **opts):
        expired = booking_expire_due()
        self.stdout.write(json.dumps({"expired": len(expired), "bookings": expired}))
