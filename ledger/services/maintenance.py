"""Rebuild the balance projections from the journal (event sourcing's replay)."""

from __future__ import annotations

import json
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

# Accounts (among the given ones) whose replay does not fit the projection's bigint columns: posted sum
# or open pending amounts past +-2^63 (entries written past the posting functions). Rewriting their
# projection raised "bigint out of range" (PostgreSQL) or "integer overflow" (SQLite's sum()) and the
# whole rebuild failed (session 18); like a limit breach, they keep their projection and are frozen.
# On SQLite the sums go through ledger_sum() (ledger/db.py: +-Infinity past the range).
_UNFIT = """
    SELECT a.id FROM ledger_account a WHERE a.id {among} AND (
        (SELECT sum(CASE WHEN e.is_pending THEN 0 ELSE e.amount END) FROM ledger_entry e WHERE e.account_id = a.id)
            NOT BETWEEN -9223372036854775807 - 1 AND 9223372036854775807
        OR (SELECT sum(CASE WHEN e.amount > 0 THEN e.amount ELSE 0 END)
              FROM ledger_entry e JOIN ledger_journal j ON j.id = e.journal_id
             WHERE e.account_id = a.id AND j.phase = 1
               AND NOT EXISTS (SELECT 1 FROM ledger_journal r WHERE r.pending_id = j.id))
            > 9223372036854775807
        OR (SELECT sum(CASE WHEN e.amount < 0 THEN e.amount ELSE 0 END)
              FROM ledger_entry e JOIN ledger_journal j ON j.id = e.journal_id
             WHERE e.account_id = a.id AND j.phase = 1
               AND NOT EXISTS (SELECT 1 FROM ledger_journal r WHERE r.pending_id = j.id))
            < -9223372036854775807
    )"""
_UNFIT_PG = _UNFIT.format(among="= ANY (%s)")
_UNFIT_SQLITE = _UNFIT.format(among="IN (SELECT value FROM json_each(%s))").replace("sum(", "ledger_sum(")

# The accounts to lock or rebuild, as one parameter whatever their count (a placeholder per id would
# reach the drivers' limits on a large ledger): an array on PostgreSQL, a JSON list on SQLite.
_AMONG_PG = " WHERE id = ANY (%s)"
_AMONG_SQLITE = " WHERE id IN (SELECT value FROM json_each(%s))"
# The writers' lock order (ledger_post_one, ledger_post_batch, _post_python): a free shard of each hot
# account in key order (Python's sorted AccountKeys: code point order, i.e. COLLATE "C" on UTF-8),
# then every other account in id order. Locking everything in id order instead deadlocked with a
# posting that held the shard of a hot account younger than one of its other accounts (shard id
# above that account's) and waited for that account, which the rebuild held while it waited for the
# shard. Hot parents, which no posting locks, come first, as account_set_status takes a parent
# before its shards. (Within one round; an account created during a rebuild is locked in a later
# round, after the earlier rounds' rows.)
_LOCK_PG = """
    SELECT id FROM ledger_account WHERE NOT (id = ANY (%s))
     ORDER BY CASE WHEN hot AND parent_id IS NULL THEN 0 WHEN parent_id IS NOT NULL THEN 1 ELSE 2 END,
              CASE WHEN hot THEN owner END COLLATE "C", CASE WHEN hot THEN code END COLLATE "C",
              CASE WHEN hot THEN currency END COLLATE "C", shard, id
       FOR UPDATE"""
_LOCK_SQLITE = "SELECT id FROM ledger_account WHERE id NOT IN (SELECT value FROM json_each(%s)) ORDER BY id"


@dataclass(frozen=True)
class RebuildReport:
    rebuilt: int  # accounts whose projection was recomputed
    frozen: tuple[int, ...] = ()  # replay breaches a limit or passes the bigint range: not rebuilt, frozen

    @property
    def ok(self) -> bool:
        return not self.frozen


@transaction.atomic(durable=True)
def ledger_rebuild() -> RebuildReport:
    """Recompute every account's projection from its entries, under lock.

    An account whose replay breaches its limit (entries written past the posting functions) cannot
    get that projection (its limit CHECKs refuse it, rightly): it keeps its last projection, is
    frozen (postings refused) and listed in `frozen`; every other account is rebuilt. An account whose
    replay does not fit the projection (a sum past +-2^63) is treated alike (session 18: before, the
    whole rebuild failed with a raw "bigint out of range").

    Only accounts this transaction holds locked are rewritten (review 14c): the lock statement sees
    the accounts of its snapshot, and an account created while it waited is posted to by others
    meanwhile; rewriting that one unlocked from an older snapshot lost their postings. So each round
    locks the accounts not locked yet (a new statement: a snapshot taken after the earlier locks),
    rebuilds exactly those, and the rounds go on until one finds no new account. On PostgreSQL the
    whole table is locked against writers first (session 18): no account can be created meanwhile, so
    the first round finds them all and no later round locks behind rows a posting waits for."""
    pg = connection.vendor == "postgresql"
    lock_sql, rebuild_sql = (_LOCK_PG, _REBUILD + _AMONG_PG) if pg else (_LOCK_SQLITE, _REBUILD + _AMONG_SQLITE)
    locked: list[int] = []
    rebuilt = 0
    frozen: list[int] = []
    with connection.cursor() as cursor:
        if pg:
            # Keep every writer of ledger_account out until the rebuild commits: postings (their row
            # locks), account creation (the posting functions', account_get_or_create's), freezes. Row
            # locks taken in rounds could not do it: an account created after a round listed its
            # accounts is locked in a later round, after rows that a posting to it waits for while
            # holding the new account's shard (a deadlock: session 18). Plain reads go on (EXCLUSIVE
            # conflicts with ROW SHARE and stronger only). The lock waits for the transactions that
            # hold account rows, as the row locks did, and is the transaction's first statement, so
            # it is taken before anything else and the rounds below find every account in the first.
            cursor.execute("LOCK TABLE ledger_account IN EXCLUSIVE MODE")
        while True:
            cursor.execute(lock_sql, [_ids(locked, pg)])
            ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                return RebuildReport(rebuilt=rebuilt, frozen=tuple(frozen))
            locked.extend(ids)
            breaches = set(ledger_verify(limit=None, checks=("limit_breaches",)).problems["limit_breaches"])
            cursor.execute(_UNFIT_PG if pg else _UNFIT_SQLITE, [_ids(ids, pg)])
            breaches.update(row[0] for row in cursor.fetchall())
            round_frozen = sorted(breaches.intersection(ids))
            if round_frozen:
                Account.objects.filter(id__in=round_frozen).update(status=AccountStatus.FROZEN)
                frozen.extend(round_frozen)
            todo = sorted(set(ids).difference(round_frozen))
            if todo:
                cursor.execute(rebuild_sql, [_ids(todo, pg)])
                rebuilt += cursor.rowcount


def _ids(ids: list[int], pg: bool):
    return ids if pg else json.dumps(ids)
