import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist
from django.core.management.base import BaseCommand, CommandError

from payera.staff.access import staff_grant_merchant, staff_merchant_ids, staff_revoke_merchant


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
        for merchant_id in merchant_ids:
            try:
                if action == "grant":
                    staff_grant_merchant(user=user, merchant_id=merchant_id)
                elif action == "revoke":
                    staff_revoke_merchant(user=user, merchant_id=merchant_id)
            except ObjectDoesNotExist:
                raise CommandError(f"no merchant {merchant_id!r}") from None
        ids = staff_merchant_ids(user)
        self.stdout.write(json.dumps({"user": username, "merchants": "all" if ids is None else sorted(ids)}))
