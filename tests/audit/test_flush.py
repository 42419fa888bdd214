"""Transactional tests (and `flush`) still work with the audit tables in place: the swapped-out
auditlog table must not block TRUNCATE of content types and users (migration 0003)."""

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from payera.audit.models import AuditLogEntry


@pytest.mark.django_db(transaction=True)
def test_flush_empties_audit_tables_and_keeps_working():
    Group.objects.create(name="before-flush")
    assert AuditLogEntry.objects.filter(object_repr="before-flush").exists()
    call_command("flush", interactive=False, verbosity=0)
    assert not AuditLogEntry.objects.filter(object_repr="before-flush").exists()
    assert Group.objects.filter(name="support").exists()  # roles come back with post_migrate
