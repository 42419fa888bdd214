"""Posting journals: the one write door of the ledger.

`journal_post` and friends are *component* services: payments calls them inside its own
`transaction.atomic()` block so that the posting commits with the state transition. They are
therefore not `durable`. On PostgreSQL one call is one SQL statement (`ledger_post_one` for a
single journal, `ledger_post_batch` otherwise or when the first answers `retry` having written nothing):
atomic on its own (autocommit), or part of the caller's transaction; a refused journal writes
nothing, so no savepoint is needed and a caller may catch the typed error and carry on.
Post last in your transaction: the account row locks are held until it commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from ledger import engine
from ledger.errors import (
    InvalidPostingError,
    JournalAlreadyReversedError,
    JournalNotFoundError,
    PostingRejectedError,
    error_for,
)
from ledger.models import Entry, Journal
from ledger.types import AccountKey, JournalKind, JournalPhase, JournalRequest, PostingLine, PostResult, PostStatus


def _item(req: JournalRequest) -> engine.Item:
    if req.expires_at is not None and not req.pending:
        raise InvalidPostingError("only a pending journal expires")
    return engine.Item(
        reference=req.reference,
        kind=req.kind,
        lines=tuple(req.lines),
        occurred_at=req.occurred_at,
        memo=req.memo,
        metadata=dict(req.metadata),
        phase=JournalPhase.PENDING if req.pending else JournalPhase.POSTED,
        expires_at=req.expires_at,
    )


def _one(item: engine.Item) -> PostResult:
    (result,) = engine.post([item], atomic=True)
    if not result.ok:
        raise error_for(result)
    return result


def journal_post(
    *,
    reference: str,
    lines: Sequence[PostingLine],
    occurred_at: datetime,
    memo: str = "",
    kind: str = JournalKind.TRANSFER,
    metadata: Mapping | None = None,
) -> PostResult:
    """Post one balanced journal. Idempotent on `reference`: the same lines again return the first
    journal (status `exists`); other lines raise JournalReferenceConflictError; a limit breach raises
    LimitExceededError. Returns the result value (journal id, created or exists)."""
    # The engine's item directly (what _item() would build from a JournalRequest): the hot path.
    return _one(
        engine.Item(
            reference=reference,
            kind=kind,
            lines=tuple(lines),
            occurred_at=occurred_at,
            memo=memo,
            metadata=dict(metadata) if metadata else {},
        )
    )


def journal_post_many(journals: Sequence[JournalRequest], *, atomic: bool = True) -> list[PostResult]:
    """Post a batch in one database call. `atomic=True`: all or nothing (TigerBeetle's linked
    chain) and a failure raises the first failure's typed error. `atomic=False`: each journal
    stands alone and the results say which were refused (nothing raises for a refusal)."""
    results = engine.post([_item(j) for j in journals], atomic=atomic)
    if atomic:
        for result in results:
            if not result.ok and result.status is not PostStatus.LINKED_EVENT_FAILED:
                raise error_for(result)
    return results


def journal_reverse(
    *, journal_id: int, reference: str, occurred_at: datetime, memo: str = "", metadata: Mapping | None = None
) -> PostResult:
    """Post the mirror image of a posted journal (each line negated), linked by `reverses`.
    A journal is reversed at most once (JournalAlreadyReversedError)."""
    original = Journal.objects.filter(id=journal_id).first()
    if original is None:
        raise JournalNotFoundError(f"no journal {journal_id}")
    if original.phase not in (JournalPhase.POSTED, JournalPhase.POST_PENDING):
        raise InvalidPostingError("only a posted journal can be reversed; void a pending one")
    lines = tuple(PostingLine(key, -amount) for key, amount in _lines_of(journal_id))
    item = engine.Item(
        reference=reference,
        kind=JournalKind.REVERSAL,
        lines=lines,
        occurred_at=occurred_at,
        memo=memo,
        metadata=dict(metadata or {}),
        reverses_id=original.id,
    )
    try:
        return _one(item)
    except JournalAlreadyReversedError:
        raise
    except PostingRejectedError as exc:
        if exc.status is PostStatus.ALREADY_REVERSED:
            raise JournalAlreadyReversedError(exc.result) from exc
        raise


def _lines_of(journal_id: int) -> list[tuple[AccountKey, int]]:
    """A journal's lines by logical account (a hot account's shard counts as the account)."""
    rows = (
        Entry.objects.filter(journal_id=journal_id)
        .order_by("id")
        .values_list("account__owner", "account__code", "account__currency", "amount")
    )
    return [(AccountKey(owner, code, currency), amount) for owner, code, currency, amount in rows]
