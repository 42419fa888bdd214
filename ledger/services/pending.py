"""Two-phase postings: a pending journal reserves, then is posted (in full or in part) or voided.

A pending journal moves `debits_pending` / `credits_pending` (not balances) of non-hot accounts,
so limited accounts cannot be overdrawn by reservations. It may carry `expires_at`; the
scheduler (`ledger.tasks.pending_expire_task`) voids expired ones, and a post after expiry is
refused (`pending_expired`) even before the scheduler ran.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from django.db import transaction
from django.db.models import Q

from ledger import engine
from ledger.errors import InvalidPostingError, JournalNotFoundError, PendingStateError, error_for
from ledger.models import Journal
from ledger.services.journals import _lines_of
from ledger.types import JournalKind, JournalPhase, PostingLine, PostResult, PostStatus

logger = logging.getLogger("payera.ledger")


def pending_create(
    *,
    reference: str,
    lines: Sequence[PostingLine],
    occurred_at: datetime,
    expires_at: datetime | None = None,
    memo: str = "",
    kind: str = JournalKind.PENDING,
    metadata: Mapping | None = None,
) -> PostResult:
    """Reserve: post a pending journal (idempotent on reference, like journal_post)."""
    item = engine.Item(
        reference=reference,
        kind=kind,
        lines=tuple(lines),
        occurred_at=occurred_at,
        memo=memo,
        metadata=dict(metadata or {}),
        phase=JournalPhase.PENDING,
        expires_at=expires_at,
    )
    (result,) = engine.post([item], atomic=True)
    if not result.ok:
        raise error_for(result)
    return result


def _pending(pending_id: int) -> Journal:
    journal = Journal.objects.filter(id=pending_id).first()
    if journal is None:
        raise JournalNotFoundError(f"no journal {pending_id}")
    if journal.phase != JournalPhase.PENDING:
        raise PendingStateError(PostResult(0, PostStatus.NOT_PENDING, None, journal.reference))
    return journal


def pending_post(
    *,
    pending_id: int,
    reference: str,
    occurred_at: datetime,
    lines: Sequence[PostingLine] | None = None,
    memo: str = "",
    metadata: Mapping | None = None,
) -> PostResult:
    """Post a pending journal: its own lines by default, or `lines` (each on an account of the
    pending journal, same direction, no more than reserved there; balanced). Releases the whole
    reservation. Refused when expired, voided or already posted (PendingStateError)."""
    pending = _pending(pending_id)
    reserved = _lines_of(pending.id)
    keys = tuple(sorted({key for key, _ in reserved}))
    if lines is None:
        lines = tuple(PostingLine(key, amount) for key, amount in reserved)
    else:
        limit: dict = defaultdict(int)
        for key, amount in reserved:
            limit[key] += amount
        got: dict = defaultdict(int)
        for line in lines:
            got[line.account] += line.amount
        for key, amount in got.items():
            cap = limit.get(key, 0)
            if cap == 0 or (amount > 0) != (cap > 0) or abs(amount) > abs(cap):
                raise InvalidPostingError(f"line on {key} exceeds what the pending journal reserved")
    return _resolve(pending.id, keys, JournalPhase.POST_PENDING, tuple(lines), reference=reference,
                    occurred_at=occurred_at, memo=memo, metadata=metadata)


def pending_void(
    *, pending_id: int, reference: str, occurred_at: datetime, memo: str = "", metadata: Mapping | None = None
) -> PostResult:
    """Void a pending journal: release its reservation, post nothing."""
    pending = _pending(pending_id)
    keys = tuple(sorted({key for key, _ in _lines_of(pending.id)}))
    return _resolve(pending.id, keys, JournalPhase.VOID_PENDING, (), reference=reference,
                    occurred_at=occurred_at, memo=memo, metadata=metadata)


_RESOLVE_KIND = {
    JournalPhase.POST_PENDING: JournalKind.POST_PENDING,
    JournalPhase.VOID_PENDING: JournalKind.VOID_PENDING,
}


def _resolve(pending_id: int, keys: tuple, phase: JournalPhase, lines: tuple, *, reference: str,
             occurred_at: datetime, memo: str, metadata: Mapping | None) -> PostResult:
    """Post or void pending journal `pending_id` (whose accounts are `keys`) in one engine call."""
    item = engine.Item(
        reference=reference,
        kind=_RESOLVE_KIND[phase],
        lines=lines,
        occurred_at=occurred_at,
        memo=memo,
        metadata=dict(metadata or {}),
        phase=phase,
        pending_id=pending_id,
        extra_accounts=keys,
    )
    (result,) = engine.post([item], atomic=True)
    if not result.ok:
        raise error_for(result)
    return result


def expiry_reference(reference: str) -> str:
    """The void's reference for the expiry of the pending journal `reference`: `expire:<reference>`,
    or, when that would pass the 255 characters a reference may have, `expire:sha256:<hex digest of
    the whole reference>` (deterministic: a rerun voids with the same reference; two long references
    sharing their first 248 characters no longer collide, review 14c)."""
    plain = f"expire:{reference}"
    if len(plain) <= engine.MAX_REFERENCE:
        return plain
    return "expire:sha256:" + hashlib.sha256(reference.encode()).hexdigest()


# How long one run of pending_expire_due goes on at most (the scheduler starts one every minute).
EXPIRY_RUN_SECONDS = 45.0


def pending_expire_due(*, limit: int = 500, budget_seconds: float = EXPIRY_RUN_SECONDS) -> int:
    """Void every open pending journal past its expiry (reference: `expiry_reference`).
    Safe to run twice and beside other writers. Returns how many it voided. A journal whose void
    fails is logged and skipped: it does not stop the expiry of the journals after it.

    The due journals are read `limit` at a time, oldest expiry first, each page after the last
    journal of the one before (keyset on expiry and id), until none is left or `budget_seconds`
    have passed: a backlog (the scheduler was down) is cleared by one run, not `limit` a minute,
    and journals whose void keeps failing do not fill every page ahead of the others.

    "Past its expiry" is by the database's clock, read once when the run starts (`engine.db_now()`),
    the clock that refuses a post as `pending_expired` (session 18: the run used the worker's clock,
    so a worker clock ahead of the database's voided holds a capture could still post, and one behind
    kept expired holds reserving the merchant's balance). The voids' `occurred_at` is that instant."""
    now = engine.db_now()
    deadline = time.monotonic() + budget_seconds
    page = max(1, min(limit, 2**63 - 1))  # a page past bigint was a raw DataError (session 19)
    voided = 0
    after: tuple[datetime, int] | None = None  # (expires_at, id) of the last journal looked at
    while True:
        due_qs = Journal.objects.pending_open().filter(expires_at__lte=now)
        if after is not None:
            due_qs = due_qs.filter(Q(expires_at__gt=after[0]) | Q(expires_at=after[0], id__gt=after[1]))
        due = list(due_qs.order_by("expires_at", "id").values_list("id", "reference", "expires_at")[:page])
        for pending_id, ref, expires_at in due:
            after = (expires_at, pending_id)
            try:
                with transaction.atomic(durable=True):
                    result = pending_void(pending_id=pending_id, reference=expiry_reference(ref), occurred_at=now,
                                          memo="expired")  # fmt: skip
            except PendingStateError:
                result = None  # posted or voided meanwhile
            except Exception:
                logger.exception("ledger: the expiry of pending journal %s failed; the others go on", pending_id)
                result = None
            voided += int(bool(result and result.created))
            if time.monotonic() >= deadline:
                return voided
        if len(due) < page:
            return voided
