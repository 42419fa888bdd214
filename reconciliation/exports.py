"""CSV exports: the payout file for the bank and a payout's settlement statement. Amounts are
minor units (integers) with a decimal column beside them; no clear bank account number ever
appears (the masked reference only)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from payera.core.money import minor_to_decimal_string
from reconciliation.models import Payout
from reconciliation.selectors import PayoutStatement

PAYOUT_FILE_HEADER = ("payout_id", "merchant_id", "currency", "amount_minor", "amount", "bank_account", "payout_date",
                      "reference")
STATEMENT_HEADER = ("payout_id", "line", "kind", "reference", "occurred_at", "currency", "amount_minor", "amount",
                    "settlement_run", "settlement_reference")


def _safe(value: str) -> str:
    """No spreadsheet formula injection from a text cell."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def payout_file_csv(payouts: Iterable[Payout]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PAYOUT_FILE_HEADER)
    for p in payouts:
        writer.writerow((p.id, p.merchant_id, p.currency, p.amount, minor_to_decimal_string(p.amount, p.currency),
                         _safe(p.bank_account_masked), p.payout_date.isoformat(), p.journal_reference))
    return out.getvalue()


def payout_statement_csv(statement: PayoutStatement) -> str:
    p = statement.payout
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STATEMENT_HEADER)

    def row(line: str, kind: str, reference: str, occurred_at: str, amount: int, run: str = "", run_ref: str = ""):
        writer.writerow((p.id, line, kind, reference, occurred_at, p.currency, amount,
                         minor_to_decimal_string(amount, p.currency), run, run_ref))

    row("carried_in", "balance", "", "", statement.carried_in)
    for line in statement.lines:
        row("transaction", line.kind, line.reference, line.occurred_at.isoformat(), line.amount,
            line.settlement_run, line.settlement_reference)
    row("reserve_kept", "balance", "", "", -statement.reserve_kept)
    row("payout", "payout", p.journal_reference, p.created_at.isoformat(), -statement.amount)
    return out.getvalue()
