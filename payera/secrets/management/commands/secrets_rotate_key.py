import json
import logging

from django.core.management.base import BaseCommand, CommandError

from payera.core.errors import PayeraError
from payera.secrets.services import key_version_latest, rotate_key

logger = logging.getLogger("payera.secrets")


class Command(BaseCommand):
    help = (
        "Rotate an application key of the secrets backend (local or Vault Transit): new data is "
        "encrypted under the new version, data encrypted before stays readable and moves forward as "
        'it is read (decrypt_refresh). Prints {"key", "version"}. A key that does not exist is refused.'
    )

    def add_arguments(self, parser):
        parser.add_argument("key", help="the key's name, e.g. payments-card-number")

    def handle(self, *args, **opts):
        key = opts["key"]
        try:
            # a key that does not exist (a typo, a shredded key) is not created: the operator would
            # believe the exposed key rotated while it kept its version
            if not key_version_latest(key=key):
                raise CommandError(f"No key named {key}: nothing was rotated (check the name).")
            version = rotate_key(key=key)
        except ValueError as exc:  # a malformed key name: the rule, never a traceback
            raise CommandError(str(exc)) from None
        except PayeraError as exc:  # unavailable, sealed, refused: our message, no secret
            raise CommandError(exc.message) from None
        logger.warning("secrets: key %s rotated to version %s (manage.py secrets_rotate_key)", key, version)
        self.stdout.write(json.dumps({"key": key, "version": version}))
