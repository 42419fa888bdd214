"""`audit_entries_batched`: the entries of a block are built as its saves happen and inserted in
one statement at its end, in its transaction — every one of them, with its actor and object."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from payera.audit.context import bind_actor, clear_actor
from payera.audit.models import AuditLogEntry, audit_entries_batched

pytestmark = pytest.mark.django_db(transaction=True)


def _inserts(ctx):
    return [q["sql"] for q in ctx.captured_queries if q["sql"].startswith('INSERT INTO "audit_auditlogentry"')]


def test_the_entries_of_a_block_are_one_insert_with_their_actor():
    token = bind_actor(api_key_id="key_1", merchant_id="mer_1", remote_addr="198.51.100.7", request_id="req_1")
    try:
        with transaction.atomic(), CaptureQueriesContext(connection) as ctx, audit_entries_batched():
            a = Group.objects.create(name="a")
            with audit_entries_batched():  # nested: the outer block inserts
                b = Group.objects.create(name="b")
            assert _inserts(ctx) == []
        assert len(_inserts(ctx)) == 1
    finally:
        clear_actor(token)
    for group in (a, b):
        [entry] = AuditLogEntry.objects.filter(object_pk=str(group.pk))
        assert entry.action == AuditLogEntry.Action.CREATE
        assert (entry.api_key_id, entry.merchant_id, entry.remote_addr, entry.request_id) == (
            "key_1", "mer_1", "198.51.100.7", "req_1")


def test_a_block_left_by_an_exception_inserts_nothing():
    with pytest.raises(RuntimeError), transaction.atomic(), audit_entries_batched():
        Group.objects.create(name="a")
        raise RuntimeError
    assert not Group.objects.filter(name="a").exists()


def test_a_batch_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError), audit_entries_batched():
        Group.objects.create(name="a")
