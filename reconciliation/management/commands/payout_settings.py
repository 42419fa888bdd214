"""Set a merchant's payout settings. The bank account is read from stdin (never from argv, which
shows up in process lists and shell history) with --bank-account-stdin."""

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from payera.core.errors import PayeraError
from reconciliation.services import payout_settings_update


class Command(BaseCommand):
    help = "Set minimum payout, reserve (basis points), payouts on/off and the bank account of a merchant."

    def add_arguments(self, parser):
        parser.add_argument("merchant", help="mer_…")
        parser.add_argument("--minimum", action="append", metavar="CUR=N",
                            help="the merchant's own minimum payout in one currency, in its minor units "
                                 "(EUR=5000, JPY=8000; repeat for more; CUR=default: back to its default)")
        parser.add_argument("--minimum-default", action="store_true",
                            help="no own minimum: each currency's default (RECONCILIATION_PAYOUT_MINIMUM)")
        parser.add_argument("--reserve-bps", type=int, help="kept back at each payout, basis points (0-10000)")
        parser.add_argument("--enable", action="store_true")
        parser.add_argument("--disable", action="store_true")
        parser.add_argument("--bank-account-stdin", action="store_true",
                            help="read 'ACCOUNT[,HOLDER NAME]' from stdin")

    def handle(self, *args, **options):
        if options["minimum"] is not None and options["minimum_default"]:
            raise CommandError("--minimum and --minimum-default exclude each other.")
        enabled = True if options["enable"] else (False if options["disable"] else None)
        account = holder = None
        if options["bank_account_stdin"]:
            raw = sys.stdin.readline().strip()
            account, _, holder = raw.partition(",")
        minimums: dict[str, int | None] = {}
        for item in options["minimum"] or ():
            code, sep, value = item.partition("=")
            if not sep or not code:
                raise CommandError(f"--minimum takes CUR=N (minor units of that currency), not {item!r}.")
            if value == "default":
                minimums[code] = None
                continue
            try:
                minimums[code] = int(value)
            except ValueError:
                raise CommandError(f"--minimum {item!r}: N is an integer of minor units.") from None
        try:
            row = payout_settings_update(
                merchant_id=options["merchant"], minimum_payout_amounts=minimums,
                minimum_payout_default=options["minimum_default"],
                reserve_bps=options["reserve_bps"], payouts_enabled=enabled, bank_account=account,
                bank_account_holder=holder or None,
            )
        except PayeraError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(json.dumps({
            "merchant": row.merchant_id, "minimum_payout_amounts": row.minimum_payout_amounts,
            "reserve_bps": row.reserve_bps, "payouts_enabled": row.payouts_enabled,
            "bank_account": row.bank_account_masked or None,
        }))
