"""Reads of settlement and payouts. Selectors that serve merchants take `merchant`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from payera.merchants.models import Merchant
from payera.merchants.scoping import owned_get
from reconciliation.errors import PayoutNotFoundError
from reconciliation.models import Payout, SettlementItem


def payout_get(*, merchant: Merchant, payout_id: str) -> Payout:
    return owned_get(Payout.objects.all(), merchant=merchant, pk=payout_id, error=PayoutNotFoundError)


def payout_list(*, merchant: Merchant) -> QuerySet[Payout]:
    return Payout.objects.for_merchant(merchant)


@dataclass(frozen=True, slots=True)
class StatementLine:
    kind: str  # capture, refund, chargeback, ... (the ledger journal's kind)
    reference: str  # the ledger journal's business reference
    occurred_at: datetime
    amount: int  # positive: owed to the merchant
    settlement_run: str
    settlement_reference: str


@dataclass(frozen=True, slots=True)
class PayoutStatement:
    payout: Payout
    lines: tuple[StatementLine, ...]
    carried_in: int  # available before the payout that no listed transaction explains (kept back earlier)
    settled: int  # sum of the lines
    reserve_kept: int
    amount: int  # carried_in + settled - reserve_kept

    @property
    def ties_out(self) -> bool:
        return self.carried_in + self.settled - self.reserve_kept == self.amount


def payout_statement(*, payout: Payout) -> PayoutStatement:
    """Every ledger transaction a payout carries: the merchant-pending entries settled by the
    settlement runs it paid out, oldest first, and how they add up to the payout."""
    items = (
        SettlementItem.objects.filter(run__payout=payout)
        .select_related("run")
        .order_by("occurred_at", "entry_id")
    )
    lines = tuple(
        StatementLine(i.kind, i.journal_reference, i.occurred_at, i.amount, i.run_id, i.run.journal_reference)
        for i in items
    )
    settled = sum(line.amount for line in lines)
    return PayoutStatement(
        payout=payout,
        lines=lines,
        carried_in=payout.available_before - settled,
        settled=settled,
        reserve_kept=payout.reserve_kept,
        amount=payout.amount,
    )
