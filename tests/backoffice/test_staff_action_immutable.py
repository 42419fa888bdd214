"""Staff actions (who did what from the back office, and why) can not be changed or deleted by
anyone: not the model, the queryset, raw SQL UPDATE/DELETE/TRUNCATE, on PostgreSQL and on the
embedded SQLite default.

Before migration backoffice.0002 only Python refused it (`AppendOnlyMixin`): a raw UPDATE rewrote
a reason, a raw DELETE or TRUNCATE removed the record of a refund or a key revocation."""

import uuid

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from payera.audit.models import AuditRecordImmutableError
from payera.backoffice.models import StaffAction, StaffActionOutcome
from payera.backoffice.services import staff_action_record
from tests.backoffice.staff import make_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def action():
    user = make_staff("auditor-" + uuid.uuid4().hex[:6])
    return staff_action_record(
        user=user,
        action="payments.refund",
        object_type="payments.payment",
        object_id="pay_x",
        reason="customer asked",
        outcome=StaffActionOutcome.DONE,
    )


def _refused(sql: str, params=()) -> str:
    with pytest.raises(DatabaseError) as info, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return str(info.value)


@pytest.mark.scenario  # also on the embedded SQLite default (scripts/run_embedded_scenarios.py)
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE backoffice_staffaction SET reason = 'nothing happened' WHERE id = %s",
        "UPDATE backoffice_staffaction SET outcome = 'refused'",
        "DELETE FROM backoffice_staffaction WHERE id = %s",
        "DELETE FROM backoffice_staffaction",  # SQLite's TRUNCATE
    ],
)
def test_raw_update_and_delete_are_refused_on_every_database(action, sql):
    assert "append-only" in _refused(sql, [action.pk] if "%s" in sql else [])
    assert StaffAction.objects.get(pk=action.pk).reason == "customer asked"


@pytest.mark.scenario
def test_model_and_queryset_refuse_too(action):
    with pytest.raises(AuditRecordImmutableError):
        action.save()
    with pytest.raises(AuditRecordImmutableError):
        action.delete()
    with pytest.raises(AuditRecordImmutableError):
        StaffAction.objects.filter(pk=action.pk).update(reason="x")
    with pytest.raises(AuditRecordImmutableError):
        StaffAction.objects.filter(pk=action.pk).delete()
    # the queryset's own raw delete (what a cascade collector uses) meets the database
    qs = StaffAction.objects.filter(pk=action.pk)
    with pytest.raises(DatabaseError), transaction.atomic():
        qs._raw_delete(qs.db)
    assert StaffAction.objects.filter(pk=action.pk).exists()


@pytest.mark.scenario
@pytest.mark.django_db(transaction=True)
def test_flush_still_empties_the_table(action):
    """The test runner's flush (TRUNCATE by a superuser on PostgreSQL, DELETE on SQLite) is let
    through, so transactional tests keep working."""
    call_command("flush", interactive=False, verbosity=0)
    assert not StaffAction.objects.exists()


@pytest.mark.django_db(transaction=True)  # committed rows: no pending trigger events to refuse it first
def test_raw_truncate_is_refused_for_any_role_but_a_superuser(action):
    assert connection.vendor == "postgresql"
    role = "staff_app_" + uuid.uuid4().hex[:8]
    with transaction.atomic(), connection.cursor() as cursor:  # rolled back: the role too
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT ALL ON backoffice_staffaction TO {role}")
        cursor.execute(f"SET LOCAL ROLE {role}")
        assert "append-only: TRUNCATE" in _refused("TRUNCATE backoffice_staffaction")
        assert "append-only: UPDATE" in _refused("UPDATE backoffice_staffaction SET reason = 'x'")
        cursor.execute("RESET ROLE")
        transaction.set_rollback(True)
    assert StaffAction.objects.filter(pk=action.pk).exists()


def test_the_runtime_role_may_only_read_and_insert_staff_actions():
    """Defence in depth: `db_grant_app_role` gives the runtime role no UPDATE or DELETE here."""
    from payera.core.db_roles import runtime_grants

    assert runtime_grants()["backoffice_staffaction"] == ("SELECT", "INSERT")


def test_the_card_number_scan_reports_staff_actions_as_immutable(action):
    """`scan_card_numbers --mask` must not try to rewrite a staff action (the database refuses it
    now): an old row holding a card number is reported `immutable`, for a person to deal with."""
    from payera.backoffice.card_scan import IMMUTABLE, card_numbers_mask

    row = StaffAction.objects.create(
        user=action.user,
        action="payments.refund",
        object_type="payments.payment",
        object_id="pay_y",
        reason="card 4111111111111111",
        outcome="done",
    )
    findings = card_numbers_mask(tables=["backoffice_staffaction"])
    assert [(f.row_id, f.column, f.status) for f in findings] == [(str(row.pk), "reason", IMMUTABLE)]
