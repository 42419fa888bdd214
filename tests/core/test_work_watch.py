"""payera.core.work: a request's work counts once its transaction commits, never when it rolled back
(the idempotency layer stores an answer given after work began and releases the key of a 400 or 503
given before it: docs/decisions/idempotency.md)."""

from __future__ import annotations

import pytest
from django.db import transaction

from payera.core.work import work_began, work_watch

pytestmark = pytest.mark.django_db


class _Boom(Exception):
    pass


def test_a_mark_in_a_committed_transaction_counts():
    with work_watch() as watch:
        with transaction.atomic(durable=True):
            work_began()
            work_began()  # once per transaction
        assert watch.began


def test_a_mark_in_a_rolled_back_transaction_does_not_count():
    with work_watch() as watch:
        with pytest.raises(_Boom), transaction.atomic(durable=True):
            work_began()
            raise _Boom
        assert not watch.began
        with transaction.atomic(durable=True):
            with pytest.raises(_Boom), transaction.atomic():  # a savepoint rolled back, its transaction kept
                work_began()
                raise _Boom
        assert not watch.began
        with transaction.atomic(durable=True):
            work_began()
        assert watch.began


def test_a_mark_outside_any_transaction_counts_at_once_and_outside_a_watch_is_nothing():
    work_began()  # no request watched: nothing to do, no error
    with work_watch() as watch:
        assert not watch.began
        from payera.core.db import outside_transaction

        with outside_transaction():  # a remote call
            pass
        assert watch.began
