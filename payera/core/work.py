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

A mark made inside a transaction counts once that transaction commits (it rides in its commit
hooks), so a write rolled back with a 400 raised in its own transaction leaves the key free, as
before. A handler whose creating transaction found its key taken (`IdempotencyKeyExistsError`)
wrote nothing, and says so (`WorkWatch.forget`). Outside a watched request (tasks, the admin)
`work_began` does nothing. One database (the default alias) holds all the work.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connections, transaction


class WorkWatch:
    """One request's work. `began`: a mark outside any transaction (a remote call, an autocommit
    write), or a mark inside one that committed — or that is still open and not rolled back (the
    marks of a transaction ride in its commit hooks: Django drops them at a rollback, and at the
    rollback of a savepoint the mark was made in)."""

    __slots__ = ("_began", "_hooked")

    def __init__(self) -> None:
        self._began = False
        self._hooked: list | None = None  # the commit-hook list our hook was last appended to

    def _committed(self) -> None:
        self._began = True

    @property
    def began(self) -> bool:
        if self._began:
            return True
        if self._hooked is None:
            return False
        hooks = connections[DEFAULT_DB_ALIAS].run_on_commit  # TestCase's outer block: still pending
        return any(func == self._committed for _, func, _ in hooks)

    def mark(self) -> None:
        if self._began:
            return
        connection = connections[DEFAULT_DB_ALIAS]
        if not connection.in_atomic_block:
            self._began = True
            return
        hooks = connection.run_on_commit
        if hooks is self._hooked and any(func == self._committed for _, func, _ in hooks):
            return  # already riding in this transaction's commit
        transaction.on_commit(self._committed, using=DEFAULT_DB_ALIAS)
        self._hooked = connection.run_on_commit

    def forget(self) -> None:
        """What was marked so far was rolled back: nothing was done."""
        self._began = False
        self._hooked = None


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
        watch.mark()
