"""Transaction helpers shared by every app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction


@contextmanager
def outside_transaction() -> Iterator[None]:
    """Assert that no transaction is open: wrap every call to a PSP or other remote system.

    An empty durable atomic block raises RuntimeError if any caller holds a transaction (Django
    ignores TestCase's own outer block), so a network call can never run while we hold row locks
    or uncommitted money movements.
    """
    with transaction.atomic(durable=True):
        pass
    yield


def created_timestamp(value) -> int:
    """Unix seconds of a datetime, as the API shows `created`."""
    return int(value.timestamp())
