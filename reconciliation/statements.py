"""A merchant's statement for a period (reads only; docs/settlement.md, "Merchant statement").

The source is the one `GET /v1/balance_transactions` reads: the posted entries of the merchant's
ledger accounts (`ledger.selectors.balance_transaction_list`), with the API's sign (positive =
owed to the merchant) and its time (the journal's `created_at`, when it was booked: a journal whose
effective time is earlier does not reopen a period). A journal is stamped inside its posting and
becomes visible when the poster's transaction commits, possibly later: a period is final only once
its end is before the start of every transaction that may still post (docs/ledger.md "Known
limits"); `final` tells whether it is (`ledger.selectors.booked_final_before()`).

Per currency and balance (pending, available, escrow, reserve): the opening balance (Σ of the
entries booked before the period), every entry booked in the period, oldest first, and the
closing balance (Σ of the entries booked before the period's end). Every entry falls in exactly
one period, so opening + Σ transactions = closing, and a period's closing is the next one's
opening; at the present the closing is the balance `GET /v1/balance` shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Sum

from ledger import selectors as ledger_selectors
from payera.core.ids import opaque_id
from payera.core.money import minor_to_decimal_string
from payments.selectors import balance_transaction_public_text

STATEMENT_COLUMNS = (
    "merchant_id",
    "currency",
    "balance",
    "row",
    "transaction_id",
    "created_at",
    "type",
    "reference",
    "description",
    "amount_minor",
    "amount",
    "running_balance_minor",
)


@dataclass(frozen=True, slots=True)
class StatementTransaction:
    id: str  # the entry's txn_ id, as in the API (payera.core.ids.opaque_id)
    created_at: datetime
    type: str
    reference: str
    description: str
    amount: int  # minor units, positive = owed to the merchant


@dataclass(slots=True)
class StatementSection:
    currency: str
    balance: str  # pending | available | escrow | reserve
    opening: int
    closing: int
    transactions: list[StatementTransaction] = field(default_factory=list)

    @property
    def ties_out(self) -> bool:
        return self.opening + sum(t.amount for t in self.transactions) == self.closing


@dataclass(frozen=True, slots=True)
class MerchantStatement:
    merchant_id: str
    start: datetime  # inclusive
    end: datetime  # exclusive
    sections: tuple[StatementSection, ...]
    final: bool = True  # the period's end is before ledger's booked_final_before(): it never changes

    @property
    def ties_out(self) -> bool:
        return all(s.ties_out for s in self.sections)


def _balance_name(account_code: str) -> str:
    return account_code.removeprefix("merchant_")


def _sums(qs) -> dict[tuple[str, str], int]:
    rows = qs.order_by().values("currency", "account__code").annotate(total=Sum("amount"))
    return {(r["currency"], _balance_name(r["account__code"])): -int(r["total"] or 0) for r in rows}


def merchant_statement(
    *, merchant_id: str, start: datetime, end: datetime, currency: str | None = None
) -> MerchantStatement:
    """The statement of [start, end). Sections with neither a balance nor a transaction are left out."""
    # read first: what is final then stays final, whatever commits while the statement is read
    final = end <= ledger_selectors.booked_final_before()
    entries = ledger_selectors.balance_transaction_list(owner=merchant_id, currency=currency)
    opening = _sums(entries.filter(created_at__lt=start))
    closing = _sums(entries.filter(created_at__lt=end))
    sections: dict[tuple[str, str], StatementSection] = {}
    for key in sorted(set(opening) | set(closing)):
        sections[key] = StatementSection(key[0], key[1], opening.get(key, 0), closing.get(key, 0))
    for e in entries.filter(created_at__gte=start, created_at__lt=end).order_by("created_at", "id").iterator():
        key = (e.currency, _balance_name(e.account_code))
        # what the merchant sees (as GET /v1/balance_transactions): no internal reference or staff note
        reference, description = balance_transaction_public_text(
            journal_id=e.journal_id, reference=e.reference, memo=e.memo
        )
        sections[key].transactions.append(
            StatementTransaction(opaque_id("txn", e.id), e.created_at, e.kind, reference, description, -e.amount)
        )
    kept = tuple(s for s in sections.values() if s.opening or s.closing or s.transactions)
    return MerchantStatement(merchant_id, start, end, kept, final)


def merchant_statement_rows(statement: MerchantStatement):
    """The CSV's rows: per section an `opening` row, one `transaction` row per entry (with the
    running balance) and a `closing` row."""
    for s in statement.sections:
        base = {
            "merchant_id": statement.merchant_id,
            "currency": s.currency,
            "balance": s.balance,
            "transaction_id": "",
            "type": "",
            "reference": "",
            "description": "",
        }

        def money(amount: int, currency: str = s.currency) -> dict:
            return {"amount_minor": amount, "amount": minor_to_decimal_string(amount, currency)}

        yield {
            **base,
            "row": "opening",
            "created_at": statement.start.isoformat(),
            **money(s.opening),
            "running_balance_minor": s.opening,
        }
        running = s.opening
        for t in s.transactions:
            running += t.amount
            yield {
                **base,
                "row": "transaction",
                "transaction_id": t.id,
                "created_at": t.created_at.isoformat(),
                "type": t.type,
                "reference": t.reference,
                "description": t.description,
                **money(t.amount),
                "running_balance_minor": running,
            }
        yield {
            **base,
            "row": "closing",
            "created_at": statement.end.isoformat(),
            **money(s.closing),
            "running_balance_minor": s.closing,
        }
