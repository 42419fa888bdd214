"""An update entry diffs against the row its service has just locked (payera.audit.snapshot)
instead of re-reading it — and only while that lock is held: after the commit, a rollback or a
savepoint rollback the row is read again, as auditlog does."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from payera.audit.models import AuditLogEntry
from payera.audit.snapshot import audit_base_remember

pytestmark = pytest.mark.django_db(transaction=True)


def _updates(group):
    return list(AuditLogEntry.objects.filter(object_pk=str(group.pk), action=AuditLogEntry.Action.UPDATE)
                .order_by("pk").values_list("changes", flat=True))


def _selects_of_group(ctx):
    return [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("SELECT") and '"auth_group"' in q["sql"]]


def _locked(pk):
    group = Group.objects.select_for_update().get(pk=pk)
    audit_base_remember(group)
    return group


def test_a_locked_row_is_diffed_without_reading_it_again():
    group = Group.objects.create(name="a")
    with transaction.atomic():
        locked = _locked(group.pk)
        locked.name = "b"
        with CaptureQueriesContext(connection) as ctx:
            locked.save()
            locked.name = "c"
            locked.save(update_fields=["name"])
        assert _selects_of_group(ctx) == []
    assert [c for c in _updates(group)] == [{"name": ["a", "b"]}, {"name": ["b", "c"]}]


def test_after_the_commit_the_row_is_read_again():
    group = Group.objects.create(name="a")
    with transaction.atomic():
        locked = _locked(group.pk)
    Group.objects.filter(pk=group.pk).update(name="changed elsewhere")  # another process, after our commit
    with transaction.atomic():
        locked.name = "b"
        with CaptureQueriesContext(connection) as ctx:
            locked.save()
        assert len(_selects_of_group(ctx)) == 1
    assert _updates(group) == [{"name": ["changed elsewhere", "b"]}]


def test_after_a_rollback_the_row_is_read_again():
    group = Group.objects.create(name="a")
    with pytest.raises(RuntimeError), transaction.atomic():
        locked = _locked(group.pk)
        raise RuntimeError
    Group.objects.filter(pk=group.pk).update(name="changed elsewhere")
    with transaction.atomic():
        locked.name = "b"
        locked.save()
    assert _updates(group) == [{"name": ["changed elsewhere", "b"]}]


def test_after_a_savepoint_rollback_the_row_is_read_again():
    group = Group.objects.create(name="a")
    with transaction.atomic():
        locked = _locked(group.pk)
        with pytest.raises(RuntimeError), transaction.atomic():
            Group.objects.filter(pk=group.pk).update(name="rolled back")
            raise RuntimeError
        locked.name = "b"
        with CaptureQueriesContext(connection) as ctx:
            locked.save()
        assert len(_selects_of_group(ctx)) == 1
    assert _updates(group) == [{"name": ["a", "b"]}]

