"""Replay the whole ledger set-based; exit 1 listing the offending ids on any mismatch."""

import json
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from ledger.verify import ledger_verify


class Command(BaseCommand):
    help = "Check every journal balances, projections equal their replay, versions are gapless, limits hold."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print a JSON report")
        parser.add_argument("--limit", type=int, default=100, help="offending ids listed per check")
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="PostgreSQL connections sharing the checks on one snapshot (default: one per core, at most 2)",
        )

    def handle(self, *args, **options):
        started = time.perf_counter()
        if options["workers"] is not None and options["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        report = ledger_verify(limit=options["limit"], workers=options["workers"])
        elapsed = time.perf_counter() - started
        body = {
            "ok": report.ok,
            "entries": report.entries,
            "journals": report.journals,
            "accounts": report.accounts,
            "connections": report.connections,
            "seconds": round(elapsed, 3),
            "problems": {k: v for k, v in report.problems.items() if v},
        }
        if options["json"]:
            self.stdout.write(json.dumps(body))
        else:
            self.stdout.write(
                f"ledger_verify: {report.entries} entries, {report.journals} journals, "
                f"{report.accounts} accounts in {elapsed:.2f}s"
            )
            for name, ids in body["problems"].items():
                self.stdout.write(f"  {name}: {', '.join(map(str, ids))}")
            self.stdout.write("OK" if report.ok else "MISMATCH")
        if not report.ok:
            sys.exit(1)
