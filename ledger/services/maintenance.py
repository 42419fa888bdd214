"""Rebuild the balance projections from the journal (event sourcing's replay)."""

from __future__ import annotations

from django.db import connection, transaction

from ledger.models import Account

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


@transaction.atomic(durable=True)
def ledger_rebuild() -> int:
    """Recompute every account's projection from its entries, under lock. Returns rows rebuilt."""
    list(Account.objects.select_for_update().order_by("id").values_list("id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(_REBUILD)
        return cursor.rowcount
