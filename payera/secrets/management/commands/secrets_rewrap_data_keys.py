import json

from django.core.management.base import BaseCommand, CommandError

from payera.secrets.services import get_backend


class Command(BaseCommand):
    help = "Local backend: re-wrap every data key under the current (first) master key of LOCAL_MASTER_KEYS."

    def handle(self, *args, **options):
        backend = get_backend()
        if not hasattr(backend, "rewrap_data_keys"):
            raise CommandError("only the local secrets backend wraps data keys with a master key")
        self.stdout.write(json.dumps({"rewrapped": backend.rewrap_data_keys()}))
