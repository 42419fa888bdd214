import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from payera.staff.access import merchant_model, staff_grant_merchant, staff_merchant_ids, staff_revoke_merchant


class Command(BaseCommand):
    help = "Limit a staff member to merchants: grant, revoke or list the merchants they may see (prints JSON)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["grant", "revoke", "list"])
        parser.add_argument("username")
        parser.add_argument("merchant_ids", nargs="*", metavar="MERCHANT_ID")

    def handle(self, *args, action, username, merchant_ids, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"no user {username!r}") from None
        if action != "list" and not merchant_ids:
            raise CommandError("name at least one merchant id")
        # every id first: a mistyped one changes nothing (no half-done grant, no revoke that
        # silently left the real grant in place)
        known = set(merchant_model().objects.filter(pk__in=merchant_ids).values_list("pk", flat=True))
        unknown = [merchant_id for merchant_id in merchant_ids if merchant_id not in known]
        if unknown:
            raise CommandError(f"no merchant {', '.join(map(repr, unknown))}: nothing was changed")
        with transaction.atomic():
            for merchant_id in merchant_ids:
                if action == "grant":
                    staff_grant_merchant(user=user, merchant_id=merchant_id)
                elif action == "revoke":
                    staff_revoke_merchant(user=user, merchant_id=merchant_id)
        ids = staff_merchant_ids(user)
        self.stdout.write(json.dumps({"user": username, "merchants": "all" if ids is None else sorted(ids)}))
