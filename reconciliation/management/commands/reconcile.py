"""Import a PSP settlement report and reconcile it: `manage.py reconcile FILE --psp NAME [--json]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from payera.core.errors import PayeraError
from psp_adapters.errors import PspConfigurationError
from psp_adapters.registry import connector_names
from reconciliation.services import reconcile_import
from reconciliation.services.reconcile import RunTakenOverError, run_busy_for


class Command(BaseCommand):
    help = "Import a PSP settlement report (in the PSP's own format) and match it against Payera."

    def add_arguments(self, parser):
        parser.add_argument("file", help="the report file ('-' reads standard input)")
        parser.add_argument("--psp", required=True, help="the connector whose report it is (alpha, beta, ...)")
        parser.add_argument("--json", action="store_true", help="print the counts as JSON (CONTRACT.md)")

    def _bar(self, phase: str, done: int, total: int) -> None:
        width = 30
        filled = width * done // total if total else width
        pct = 100 * done // total if total else 100
        self.stderr.write(f"\r{phase:<8} [{'#' * filled}{'.' * (width - filled)}] {pct:3d}% {done}/{total}", ending="")
        if done >= total:
            self.stderr.write("")

    def handle(self, *args, **options):
        path = options["file"]
        try:
            raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        quiet = options["json"]
        try:
            result = reconcile_import(
                psp=options["psp"],
                raw=raw,
                file_name=Path(path).name,
                source="command",
                actor="command",
                progress=None if quiet else self._bar,
            )
        except PspConfigurationError as exc:
            known = connector_names()
            if options["psp"] not in known:
                raise CommandError(f"unknown PSP {options['psp']!r} (known: {', '.join(known)})") from None
            raise CommandError(f"PSP {options['psp']!r} is not ready to use: {exc}") from None
        except PayeraError as exc:
            raise CommandError(exc.message) from None
        except RunTakenOverError as exc:  # not a failure of the file: another import owns its run now
            raise CommandError(
                f"{exc}: another import of the same file took its run over (this import made no progress for"
                f" {run_busy_for()}) and imports the day now; nothing of this import was kept. Once that run is"
                " done there is nothing to do; if it failed, import the file again later"
            ) from None
        for err in result.row_errors:
            self.stderr.write(f"line {err['line']}: {err['message']}")
        if quiet:
            self.stdout.write(json.dumps(result.as_contract()))
            return
        body = result.as_contract()
        rows = body["rows"]
        rate = 100.0 * body["matched"] / rows if rows else 100.0
        self.stdout.write(f"run {result.run_id}{'' if result.created else ' (this file was imported before)'}")
        self.stdout.write(
            f"rows {rows}, matched {body['matched']} ({rate:.1f} %), unreadable lines "
            f"{result.row_error_count}, healed by inquiry {result.healed}"
        )
        for kind, n in body["discrepancies"].items():
            self.stdout.write(f"  {kind.replace('_', ' '):<20} {n}")
        for check in result.receivable:
            state = "ties out" if check["ok"] else "DOES NOT TIE OUT"
            self.stdout.write(
                f"receivable {options['psp']} {check['currency']}: ledger {check['ledger']}, "
                f"captured and not settled {check['unsettled']}: {state}"
            )
