"""Merchant settlement: move captured funds older than the merchant's settlement delay from
merchant pending to merchant available (docs/settlement.md).

What is settled is read from the ledger alone: the merchant pending account's posted entries
whose journal occurred before the cutoff, except settlement journals themselves, and except
entries an earlier run already settled (`SettlementItem.entry_id` is unique). If their net is
owed to the merchant (> 0) one journal `settlement:<merchant>:<currency>:<cutoff date>` moves it;
if refunds and chargebacks outweigh captures (net <= 0), nothing moves and the entries stay
unsettled for a later run (carried forward): a negative amount never reaches available.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone

from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from ledger.types import MERCHANT_PENDING, Accounts, JournalKind, JournalRequest
from payera.merchants.models import Merchant
from reconciliation.models import SettlementItem, SettlementRun, SettlementRunStatus
from reconciliation.postings import settlement_lines
from reconciliation.services.locks import merchant_payout_lock

logger = logging.getLogger("payera.reconciliation")


@dataclass(frozen=True, slots=True)
class SettlementOutcome:
    run_id: str
    merchant_id: str
    currency: str
    cutoff_date: date
    status: str
    amount: int
    carried_amount: int
    items: int
    created: bool  # False: this cutoff was already run (nothing moved again)

    def as_dict(self) -> dict:
        return {
            "run": self.run_id,
            "merchant": self.merchant_id,
            "currency": self.currency,
            "cutoff_date": self.cutoff_date.isoformat(),
            "status": self.status,
            "amount": self.amount,
            "carried_amount": self.carried_amount,
            "items": self.items,
            "created": self.created,
        }


def settlement_cutoff(*, now: datetime, delay_days: int) -> tuple[date, datetime]:
    """(cutoff date, cutoff instant): funds captured on UTC day D settle on the run of day
    D + delay; the run of `now`'s day settles every journal that occurred before the end of
    day `today - delay` (UTC)."""
    cutoff_date = now.astimezone(UTC).date() - timedelta(days=delay_days)
    return cutoff_date, datetime.combine(cutoff_date + timedelta(days=1), time.min, tzinfo=UTC)


def settlement_reference(*, merchant_id: str, currency: str, cutoff_date: date) -> str:
    return f"settlement:{merchant_id}:{currency}:{cutoff_date.isoformat()}"


def _pending_currencies(merchant_id: str) -> list[str]:
    return sorted(
        a.currency for a in ledger_selectors.account_list(owner=merchant_id) if a.code == MERCHANT_PENDING
    )


def settlement_run(*, merchant_id: str | None = None, now: datetime | None = None) -> list[SettlementOutcome]:
    """Settle every merchant (or one) in every currency it has a pending account in. Each
    merchant and currency is its own durable transaction; running again for the same cutoff
    date moves nothing (the run exists), and concurrent runs take turns on the merchant lock."""
    now = now or timezone.now()
    merchants = Merchant.objects.order_by("id")
    if merchant_id is not None:
        merchants = merchants.filter(pk=merchant_id)
    outcomes = []
    for merchant_pk, delay in merchants.values_list("pk", "settlement_delay_days"):
        cutoff_date, cutoff_at = settlement_cutoff(now=now, delay_days=delay)
        for currency in _pending_currencies(merchant_pk):
            outcomes.append(
                settlement_run_one(
                    merchant_id=merchant_pk, currency=currency, cutoff_date=cutoff_date, cutoff_at=cutoff_at, now=now
                )
            )
    return outcomes


@transaction.atomic(durable=True)
def settlement_run_one(
    *, merchant_id: str, currency: str, cutoff_date: date, cutoff_at: datetime, now: datetime
) -> SettlementOutcome:
    """Settle one merchant and currency up to `cutoff_at` (the run of `cutoff_date`)."""
    merchant_payout_lock(merchant_id)
    existing = SettlementRun.objects.filter(merchant_id=merchant_id, currency=currency, cutoff_date=cutoff_date).first()
    if existing is not None:
        return _outcome(existing, created=False)

    settled = SettlementItem.objects.filter(merchant_id=merchant_id, currency=currency).values("entry_id")
    entries = list(
        ledger_selectors.account_entry_list(
            key=Accounts.merchant_pending(merchant_id, currency),
            occurred_before=cutoff_at,
            exclude_kinds=(JournalKind.SETTLEMENT,),
        )
        .exclude(id__in=Subquery(settled))
        .values_list("id", "amount", "reference", "kind", "occurred_at")
    )
    # Entries are debit-positive; the merchant is owed the credits: owed = -amount.
    net = -sum(amount for _, amount, *_ in entries)
    run = SettlementRun(
        merchant_id=merchant_id, currency=currency, cutoff_date=cutoff_date, cutoff_at=cutoff_at, created_at=now
    )
    if net <= 0:
        run.status = SettlementRunStatus.CARRIED_FORWARD
        run.carried_amount = net
        run.save()
        if entries:
            logger.info(
                "settlement carried forward",
                extra={"merchant": merchant_id, "currency": currency, "net": net, "entries": len(entries)},
            )
        return _outcome(run, created=True)

    reference = settlement_reference(merchant_id=merchant_id, currency=currency, cutoff_date=cutoff_date)
    run.status = SettlementRunStatus.SETTLED
    run.amount = net
    run.credits = -sum(amount for _, amount, *_ in entries if amount < 0)
    run.debits = sum(amount for _, amount, *_ in entries if amount > 0)
    run.item_count = len(entries)
    run.journal_reference = reference
    run.save()
    SettlementItem.objects.bulk_create(
        [
            SettlementItem(
                run=run,
                merchant_id=merchant_id,
                currency=currency,
                entry_id=entry_id,
                journal_reference=ref,
                kind=kind,
                occurred_at=occurred_at,
                amount=-amount,
            )
            for entry_id, amount, ref, kind, occurred_at in entries
        ],
        batch_size=1000,
    )
    # Post last: the account locks are held until commit.
    ledger_services.journal_post_many(
        [
            JournalRequest(
                reference=reference,
                lines=settlement_lines(merchant_id=merchant_id, currency=currency, amount=net),
                occurred_at=now,
                kind=JournalKind.SETTLEMENT,
                memo=f"settlement up to {cutoff_date.isoformat()}",
                metadata={"settlement_run": run.id, "cutoff_at": cutoff_at.isoformat(), "entries": len(entries)},
            )
        ]
    )
    return _outcome(run, created=True)


def _outcome(run: SettlementRun, *, created: bool) -> SettlementOutcome:
    return SettlementOutcome(
        run_id=run.id,
        merchant_id=run.merchant_id,
        currency=run.currency,
        cutoff_date=run.cutoff_date,
        status=run.status,
        amount=run.amount,
        carried_amount=run.carried_amount,
        items=run.item_count,
        created=created,
    )
