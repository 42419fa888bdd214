import json

from django.core.management.base import BaseCommand

from payera.staff.roles import sync_roles, unmatched_specs


class Command(BaseCommand):
    help = "Create the back-office role groups and set their permissions to what payera/staff/roles.py says."

    def add_arguments(self, parser):
        parser.add_argument("--database", default="default")

    def handle(self, *args, database, **options):
        from django.contrib.auth.models import Permission

        counts = sync_roles(using=database)
        keys = {
            f"{a}.{c}"
            for a, c in Permission.objects.using(database).values_list("content_type__app_label", "codename")
        }
        self.stdout.write(json.dumps({"roles": counts, "pending_specs": unmatched_specs(keys)}))
