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
        parser.add_argument(
            "--limit", type=int, default=100, help="offending ids listed per check (0: none, still counted)"
        )
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
        if options["limit"] < 0:
            # refused, and never "ok": a monitor reading the JSON (or the exit code) sees no sound ledger
            message = f"--limit must be 0 or more (offending ids listed per check), not {options['limit']}"
            if options["json"]:
                self.stdout.write(json.dumps({"ok": False, "error": message}))
            self.stderr.write(message)
            sys.exit(1)
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
            "counts": {k: n for k, n in report.counts.items() if n},
        }
        if options["json"]:
            self.stdout.write(json.dumps(body))
        else:
            self.stdout.write(
                f"ledger_verify: {report.entries} entries, {report.journals} journals, "
                f"{report.accounts} accounts in {elapsed:.2f}s"
            )
            for name, count in body["counts"].items():
                ids = report.problems.get(name, [])
                more = f" (and {count - len(ids)} more)" if count > len(ids) else ""
                self.stdout.write(f"  {name}: {', '.join(map(str, ids))}{more}")
            self.stdout.write("OK" if report.ok else "MISMATCH")
        if not report.ok:
            sys.exit(1)
