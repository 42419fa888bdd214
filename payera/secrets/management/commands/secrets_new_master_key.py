from django.core.management.base import BaseCommand, CommandError

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

        try:
            entry = new_master_key_entry(id or timezone.now().strftime("m%Y%m%d%H%M%S"))
        except ValueError as exc:  # the key id's rule: a message, not a traceback
            raise CommandError(str(exc)) from None
        self.stdout.write(entry)
