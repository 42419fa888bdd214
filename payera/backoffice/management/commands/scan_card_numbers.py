"""`manage.py scan_card_numbers [--json] [--mask] [--table NAME ...]`

PCI DSS data discovery: every stored text and JSON value holding a card number, by table, column
and row id, with a masked sample (`payera.backoffice.card_scan`). Exit status 1 when any is found
(masked or not: a rescan after `--mask` still finds those in immutable tables), 0 when none.

`--mask` rewrites the values found in mutable tables with their card numbers masked, in one
transaction, with an audit record per row; the ledger and the audit trail are append-only and are
listed "immutable, cannot be masked". What to do then: docs/runbooks/card-number-found.md.
"""

from __future__ import annotations

import json
import sys
from collections import Counter

from django.core.management.base import BaseCommand

from payera.backoffice.card_scan import card_numbers_mask, card_numbers_scan, scanned_columns


class Command(BaseCommand):
    help = "Find card numbers stored in clear in text and JSON columns (PCI DSS data discovery); --mask masks them."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", dest="as_json", help="print one JSON document")
        parser.add_argument(
            "--mask", action="store_true", help="mask what is found in mutable tables (one transaction, audited)"
        )
        parser.add_argument(
            "--table", action="append", dest="tables", metavar="NAME", help="scan only this table (repeatable)"
        )
        parser.add_argument("--database", default="default")

    def handle(self, *args, as_json: bool = False, mask: bool = False, tables=None, database="default", **options):
        columns = scanned_columns(using=database, tables=tables)
        if mask:
            findings = card_numbers_mask(using=database, tables=tables)
        else:
            findings = list(card_numbers_scan(using=database, tables=tables))
        by_status = Counter(finding.status for finding in findings)
        report = {
            "tables_scanned": len({c.table for c in columns}),
            "columns_scanned": len(columns),
            "found": len(findings),
            "by_status": dict(sorted(by_status.items())),
            "findings": [finding.as_dict() for finding in findings],
        }
        if as_json:
            self.stdout.write(_dumps(report))
        else:
            self._print(report, mask=mask)
        if findings:
            sys.exit(1)

    def _print(self, report: dict, *, mask: bool) -> None:
        self.stdout.write(
            f"Scanned {report['columns_scanned']} text and JSON columns of {report['tables_scanned']} tables."
        )
        if not report["findings"]:
            self.stdout.write("No card number found.")
            return
        self.stdout.write(f"Card numbers found in {report['found']} values:")
        for f in report["findings"]:
            note = f" ({f['note']})" if f["note"] else ""
            self.stdout.write(f"  {f['table']}.{f['column']} id={f['row_id']} [{f['status']}]{note}: {f['sample']}")
        left = sum(n for status, n in report["by_status"].items() if status != "masked")
        if mask:
            self.stdout.write(f"Masked: {report['by_status'].get('masked', 0)}; left as they are: {left}.")
        elif left:
            self.stdout.write(
                "Run again with --mask to mask those marked [found]; the others are reported only (their note says "
                "why). What to do: docs/runbooks/card-number-found.md."
            )


def _dumps(report: dict) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2)
