"""CSV exports: the payout list (masked accounts), the bank file (clear accounts: only through
`reconciliation.services.payout_bank_file_export`, which checks, reveals and audits) and a payout's
settlement statement. Amounts are minor units (integers) with a decimal column beside them."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from datetime import date

from payera.core.money import minor_to_decimal_string
from reconciliation.models import Payout
from reconciliation.selectors import PayoutStatement

PAYOUT_FILE_HEADER = ("payout_id", "merchant_id", "currency", "amount_minor", "amount", "bank_account", "payout_date",
                      "reference")
# The bank file: one credit transfer per row (docs/settlement.md, "Bank file"). RFC 4180 CSV,
# UTF-8, comma, "\n", a header row. `amount` is the bank's decimal format: a point and exactly the
# currency's minor digits (12.50 EUR, 1250 JPY), never a sign; `amount_minor` the same in minor units.
BANK_FILE_HEADER = ("reference", "beneficiary_name", "beneficiary_account", "currency", "amount", "amount_minor",
                    "execution_date", "remittance_information", "merchant_id")
STATEMENT_HEADER = ("payout_id", "line", "kind", "reference", "occurred_at", "currency", "amount_minor", "amount",
                    "settlement_run", "settlement_reference")


# a number as the exports write them: an optional sign, digits, an optional decimal part (-111.09)
_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


def csv_safe(value) -> str:
    """No spreadsheet formula injection from a text cell: a cell starting with `=`, `+`, `-`, `@`,
    tab or CR gets a leading `'` (shown as text, never evaluated), unless it is a plain number
    (`-111.09`, `-11109`), which stays a number so the spreadsheet's sums count it."""
    value = "" if value is None else str(value)
    if value[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def payout_file_csv(payouts: Iterable[Payout]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PAYOUT_FILE_HEADER)
    for p in payouts:
        writer.writerow((p.id, p.merchant_id, p.currency, p.amount, minor_to_decimal_string(p.amount, p.currency),
                         csv_safe(p.bank_account_masked), p.payout_date.isoformat(), p.journal_reference))
    return out.getvalue()


def payout_bank_file_csv(payouts: Iterable[Payout], accounts: dict[str, dict], *, on: date) -> str:
    """The bank's file made on day `on` (UTC): `accounts` maps each payout's merchant id to its
    revealed bank account ({"account", "holder"}). The payout id is the transfer's reference
    (end-to-end id). The execution date is the payout date, or `on` for a payout made earlier (never
    a date already past: banks refuse those)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(BANK_FILE_HEADER)
    for p in payouts:
        account = accounts[p.merchant_id]
        writer.writerow((p.id, csv_safe(account["holder"]), account["account"], p.currency,
                         minor_to_decimal_string(p.amount, p.currency), p.amount, max(p.payout_date, on).isoformat(),
                         f"Payera payout {p.id}", p.merchant_id))
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
    row("payout", "payout", p.journal_reference, statement.occurred_at.isoformat(), -statement.amount)
    return out.getvalue()
