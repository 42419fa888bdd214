"""Audit records can not be changed or deleted: not by the models, querysets, admin, or SQL."""

import re

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection, transaction

from payera.audit.models import AuditLogEntry, AuditRecordImmutableError, SecurityEvent
from payera.audit.services import record_auth_failure
from tests.backoffice.staff import otp_force_login

pytestmark = pytest.mark.django_db


@pytest.fixture
def records():
    Group.objects.create(name="audited")
    record_auth_failure(
        kind="api_key", identifier="sk_test_ab", reason="unknown_key", remote_addr=None, request_id=None
    )
    return AuditLogEntry.objects.latest("pk"), SecurityEvent.objects.latest("pk")


@pytest.mark.parametrize("index", [0, 1])
def test_models_and_querysets_refuse_change_and_delete(records, index):
    record = records[index]
    model = type(record)
    with pytest.raises(AuditRecordImmutableError):
        record.save()
    with pytest.raises(AuditRecordImmutableError):
        record.delete()
    with pytest.raises(AuditRecordImmutableError):
        model.objects.filter(pk=record.pk).update(remote_addr="10.0.0.1")
    with pytest.raises(AuditRecordImmutableError):
        model.objects.filter(pk=record.pk).delete()
    with pytest.raises(AuditRecordImmutableError):
        model.objects.bulk_update([record], ["remote_addr"])


@pytest.mark.scenario  # also on the embedded SQLite default (scripts/run_embedded_scenarios.py)
@pytest.mark.parametrize("table", ["audit_auditlogentry", "audit_securityevent"])
@pytest.mark.parametrize("statement", ["UPDATE {t} SET remote_addr = '10.0.0.1'", "DELETE FROM {t}"])
def test_database_refuses_update_and_delete(records, table, statement):
    """On PostgreSQL since migration 0002; on SQLite (where `DELETE FROM t` is also the TRUNCATE)
    only since 0005: before, a raw UPDATE or DELETE rewrote or emptied the embedded audit trail."""
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement.format(t=table))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed table names
        assert cursor.fetchone()[0] >= 1


@pytest.mark.django_db(transaction=True)  # committed rows: no pending trigger events to refuse it first
@pytest.mark.parametrize("table", ["audit_auditlogentry", "audit_securityevent"])
def test_database_refuses_truncate_to_any_role_but_a_superuser(records, table):
    """Row triggers do not see TRUNCATE: until migration 0005 a role with the privilege emptied the
    audit trail in one statement. (A superuser may: the test runner's flush.)"""
    import uuid

    role = "audit_app_" + uuid.uuid4().hex[:8]
    with transaction.atomic(), connection.cursor() as cursor:  # rolled back: the role too
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT ALL ON {table} TO {role}")
        cursor.execute(f"SET LOCAL ROLE {role}")
        with pytest.raises(DatabaseError, match="append-only: TRUNCATE"), transaction.atomic():
            cursor.execute(f"TRUNCATE {table}")
        cursor.execute("RESET ROLE")
        transaction.set_rollback(True)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed table names
        assert cursor.fetchone()[0] >= 1


def test_the_runtime_role_may_only_read_and_insert_audit_records():
    from payera.core.db_roles import runtime_grants

    grants = runtime_grants()
    assert grants["audit_auditlogentry"] == grants["audit_securityevent"] == ("SELECT", "INSERT")


def test_deleting_an_actor_does_not_rewrite_history(client, django_user_model, records):
    from django.db.models import ProtectedError

    from payera.audit.context import bind_actor, clear_actor

    user = django_user_model.objects.create_user("eve", password="a-long-password-123", is_staff=True)
    token = bind_actor(user_id=user.pk)
    Group.objects.create(name="by-eve")
    clear_actor(token)
    with pytest.raises(ProtectedError):
        user.delete()


def test_admin_is_read_only_and_reading_is_a_permission(client, auditor, staff_admin, django_user_model, records):
    entry, event = records
    pages = [
        ("/admin/audit/auditlogentry/", f"/admin/audit/auditlogentry/{quote(entry.pk)}/"),
        ("/admin/audit/securityevent/", f"/admin/audit/securityevent/{quote(event.pk)}/"),
    ]
    for user in (auditor, staff_admin):
        otp_force_login(client, user)
        for list_url, object_url in pages:
            assert client.get(list_url).status_code == 200
            page = client.get(object_url + "change/")
            assert page.status_code == 200
            assert b'name="_save"' not in page.content  # a view page, no form to submit
            assert client.post(object_url + "change/", {"remote_addr": "10.0.0.1"}).status_code == 403
            assert client.get(list_url + "add/").status_code == 403
            assert client.post(object_url + "delete/", {"post": "yes"}).status_code == 403
            changelist = client.post(list_url, {"action": "delete_selected", "_selected_action": [entry.pk]})
            assert changelist.status_code in (200, 302)  # no such action: nothing happens
    assert AuditLogEntry.objects.filter(pk=entry.pk).exists() and SecurityEvent.objects.filter(pk=event.pk).exists()

    nobody = django_user_model.objects.create_user("sam", password="a-long-password-123", is_staff=True)
    otp_force_login(client, nobody)
    for list_url, object_url in pages:
        assert client.get(list_url).status_code == 403
        assert client.get(object_url + "change/").status_code == 403


def test_only_the_view_permission_exists():
    from django.contrib.auth.models import Permission

    codenames = set(Permission.objects.filter(content_type__app_label="audit").values_list("codename", flat=True))
    assert codenames == {"view_auditlogentry", "view_securityevent"}


def test_a_record_links_to_its_object_whatever_the_objects_id(client, staff_admin):
    """auditlog's own "Resource" link reverses the object id unquoted: the admin reads `_2F` in a URL
    as `/`, so for one public id in about 190 (`mer_2F…`) the link led to "doesn't exist"."""
    from tests.merchants.factories import MerchantFactory

    merchant = MerchantFactory(id="mer_2F" + "a" * 22)
    entry = AuditLogEntry.objects.filter(object_pk=merchant.pk).latest("pk")
    otp_force_login(client, staff_admin)
    page = client.get(f"/admin/audit/auditlogentry/{quote(entry.pk)}/change/").content.decode()
    [link] = re.findall(r'href="(/admin/merchants/merchant/[^"]+)"', page)
    assert client.get(link).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_auditlogs_own_flush_command_can_not_empty_the_trail(records):
    """django-auditlog ships `manage.py auditlogflush`: without --truncate the queryset refuses
    (AppendOnlyQuerySet); with it, a TRUNCATE TABLE that until migration 0005 emptied the trail
    for any role holding the privilege (a table owner running commands, say)."""
    import uuid

    from django.core.management import call_command

    role = "audit_owner_" + uuid.uuid4().hex[:8]
    with pytest.raises(AuditRecordImmutableError):
        call_command("auditlogflush", "--yes", verbosity=0)
    with transaction.atomic(), connection.cursor() as cursor:  # rolled back: the role too
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT ALL ON audit_auditlogentry TO {role}")
        cursor.execute(f"SET LOCAL ROLE {role}")
        with pytest.raises(DatabaseError, match="append-only: TRUNCATE"), transaction.atomic():
            call_command("auditlogflush", "--yes", "--truncate", verbosity=0)
        cursor.execute("RESET ROLE")
        transaction.set_rollback(True)
    assert AuditLogEntry.objects.exists()
