from django.core.management.base import BaseCommand

from payera.secrets.backends.local import new_master_key_entry


class Command(BaseCommand):
    help = (
        "Print a new master key entry for LOCAL_MASTER_KEYS (id:base64). Put it first to rotate: "
        "LOCAL_MASTER_KEYS=<new>,<old>; run secrets_rewrap_data_keys; then drop the old one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--id", default="", help="key id (default: mYYYYMMDDHHMMSS)")

    def handle(self, *args, id, **options):
        from django.utils import timezone

        self.stdout.write(new_master_key_entry(id or timezone.now().strftime("m%Y%m%d%H%M%S")))
