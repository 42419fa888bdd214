"""Rebuild the balance projections from the journal (event sourcing's replay)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction

from ledger.models import Account, AccountStatus
from ledger.verify import ledger_verify

_REBUILD = """
    UPDATE ledger_account SET
        balance = coalesce((SELECT sum(CASE WHEN e.is_pending THEN 0 ELSE e.amount END)
                              FROM ledger_entry e WHERE e.account_id = ledger_account.id), 0),
        version = coalesce((SELECT count(*) FROM ledger_entry e WHERE e.account_id = ledger_account.id), 0),
        debits_pending = CASE WHEN hot THEN 0 ELSE coalesce((
            SELECT sum(CASE WHEN e.amount > 0 THEN e.amount ELSE 0 END)
              FROM ledger_entry e JOIN ledger_journal j ON j.id = e.journal_id
             WHERE e.account_id = ledger_account.id AND j.phase = 1
               AND NOT EXISTS (SELECT 1 FROM ledger_journal r WHERE r.pending_id = j.id)), 0) END,
        credits_pending = CASE WHEN hot THEN 0 ELSE coalesce((
            SELECT sum(CASE WHEN e.amount < 0 THEN -e.amount ELSE 0 END)
              FROM ledger_entry e JOIN ledger_journal j ON j.id = e.journal_id
             WHERE e.account_id = ledger_account.id AND j.phase = 1
               AND NOT EXISTS (SELECT 1 FROM ledger_journal r WHERE r.pending_id = j.id)), 0) END
"""


@dataclass(frozen=True)
class RebuildReport:
    rebuilt: int  # accounts whose projection was recomputed
    frozen: tuple[int, ...] = ()  # accounts whose replay breaches a limit: not rebuilt, frozen

    @property
    def ok(self) -> bool:
        return not self.frozen


@transaction.atomic(durable=True)
def ledger_rebuild() -> RebuildReport:
    """Recompute every account's projection from its entries, under lock.

    An account whose replay breaches its limit (entries written past the posting functions) cannot
    get that projection (its limit CHECKs refuse it, rightly): it keeps its last projection, is
    frozen (postings refused) and listed in `frozen`; every other account is rebuilt."""
    list(Account.objects.select_for_update().order_by("id").values_list("id", flat=True))
    frozen = tuple(ledger_verify(limit=None, checks=("limit_breaches",)).problems["limit_breaches"])
    with connection.cursor() as cursor:
        sql = _REBUILD
        if frozen:
            Account.objects.filter(id__in=frozen).update(status=AccountStatus.FROZEN)
            sql += f" WHERE id NOT IN ({', '.join(['%s'] * len(frozen))})"
        cursor.execute(sql, frozen or None)
        return RebuildReport(rebuilt=cursor.rowcount, frozen=frozen)
