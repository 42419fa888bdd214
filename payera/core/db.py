"""Transaction helpers shared by every app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connections

from payera.core.work import work_began


@contextmanager
def outside_transaction() -> Iterator[None]:
    """Assert that no transaction is open: wrap every call to a PSP or other remote system.

    It applies the rule of a durable atomic block without opening one (an empty block costs a
    BEGIN and a COMMIT round trip per PSP call): RuntimeError if any caller holds a transaction
    (an atomic block other than TestCase's own outer one, or autocommit turned off), so a network
    call can never run while we hold row locks or uncommitted money movements.
    """
    for alias in connections:
        assert_no_transaction(alias)
    work_began()  # a remote call: the request's work has begun (payera.core.work)
    yield


def assert_no_transaction(using: str = DEFAULT_DB_ALIAS) -> None:
    """The check of `atomic(durable=True)` without opening a block: for a use case that is one
    statement (it commits on its own in autocommit mode) and must never join a caller's
    transaction. TestCase's own outer block is ignored, as Django does for durable blocks."""
    connection = connections[using]
    blocks = connection.atomic_blocks
    if blocks and not blocks[-1]._from_testcase:
        raise RuntimeError("This must run outside any atomic block (a remote call, or a durable one-statement write).")
    if not blocks and connection.connection is not None and not connection.get_autocommit():
        raise RuntimeError("This must run outside any transaction (a remote call, or a durable one-statement write).")


def created_timestamp(value) -> int:
    """Unix seconds of a datetime, as the API shows `created`."""
    return int(value.timestamp())
