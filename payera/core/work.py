"""Whether the request being served has begun its work: the idempotency layer's "after work began".

CONTRACT "Requests": a 400 before any work is not stored (the key may be used again, corrected);
any answer after work began is stored and replayed. Which answer comes before the work can not be
told from its status alone: a service may refuse with a 400 after it wrote (a booking's escrow
refund refused after the refund was recorded and sent), and a 503 may come before anything was
done (the secrets backend down while tokenizing). So `MerchantApiView.dispatch` watches the request
(`work_watch`) and the places where work is done say so (`work_began`):

- every audited write (payera.audit: the entry's pre_save, in the write's own transaction);
- every domain event written to the outbox (payera.events, same transaction as the change);
- every object bound to the request's key (`idempotency_resource_record`);
- every remote call (`payera.core.db.outside_transaction`: a PSP call comes after its attempt was
  committed, ARCHITECTURE rule 5).

The mark is taken when the write is made, not when it commits: a write rolled back afterwards still
counts. That errs on the side of storing the answer (never a second effect); a handler whose
creating transaction found its key taken (`IdempotencyKeyExistsError`) wrote nothing, and says so
(`WorkWatch.forget`). Outside a watched request (tasks, the admin) `work_began` does nothing.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager


class WorkWatch:
    __slots__ = ("began",)

    def __init__(self) -> None:
        self.began = False

    def forget(self) -> None:
        """What was marked so far was rolled back: nothing was done."""
        self.began = False


_watch: contextvars.ContextVar[WorkWatch | None] = contextvars.ContextVar("payera_work_watch", default=None)


@contextmanager
def work_watch() -> Iterator[WorkWatch]:
    """Watch the work of the code run inside (one request)."""
    watch = WorkWatch()
    token = _watch.set(watch)
    try:
        yield watch
    finally:
        _watch.reset(token)


def work_began() -> None:
    """The request being served (if any) has begun its work."""
    watch = _watch.get()
    if watch is not None:
        watch.began = True
