"""manage.py staff_otp_enrol USERNAME [--replace] [--name NAME]

Gives a staff account its TOTP device and prints, once, the otpauth:// URL to load into an
authenticator app (as JSON: {"user", "device_id", "config_url"}). Run it with the person present;
do not paste the URL into tickets or chat.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from payera.backoffice.services import StaffOtpEnrolError, staff_otp_device_enrol


class Command(BaseCommand):
    help = "Enrol a TOTP device for a staff account (second factor for the back office)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="authenticator", help="device name shown in the admin")
        parser.add_argument("--replace", action="store_true", help="replace the account's existing devices")

    def handle(self, *args, username, name, replace, **options):
        try:
            device = staff_otp_device_enrol(username=username, device_name=name, replace=replace)
        except StaffOtpEnrolError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            json.dumps({"user": device.username, "device_id": device.device_id, "config_url": device.config_url})
        )
