"""`manage.py sandbox_settlement_report --psp alpha [--date YYYY-MM-DD]`: the sandbox PSP's
settlement report for one UTC day (default today), in that PSP's own CSV format, to stdout.

It reads the sandbox's own storage (`<SANDBOX_DATA_DIR>/<psp>.sqlite3`, read-only), so it works
whether or not the sandbox is running; the running sandbox serves the same bytes over HTTP
(`AlphaAdapter.fetch_settlement_report`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from psp_adapters.sandbox import PSPS, reports
from psp_adapters.sandbox.store import db_path


class Command(BaseCommand):
    help = "Write a sandbox PSP's settlement report (its own CSV format) for one day to stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--psp", required=True, choices=PSPS)
        parser.add_argument("--date", default=None, help="YYYY-MM-DD (UTC day; default: today)")

    def handle(self, *args: object, psp: str, date: str | None, **options: object) -> None:
        try:
            day = dt.date.fromisoformat(date) if date else dt.datetime.now(dt.UTC).date()
        except ValueError:
            raise CommandError(f"--date must be YYYY-MM-DD, not {date!r}") from None
        path = db_path(Path(settings.SANDBOX_DATA_DIR), psp)
        if not path.exists():
            self.stderr.write(f"no {psp} sandbox data at {path}: the report is empty")
        self.stdout.write(reports.render(psp, path, day).decode("utf-8"), ending="")
