"""Roles are data: groups created by migration, kept exact by post_migrate / sync_roles, with
inheritance support -> operations -> finance -> admin, and later apps' permissions assigned
the day those apps are migrated."""

import json

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command

from payera.staff.apps import _sync_roles_after_migrate
from payera.staff.roles import ROLE_NAMES, role_permission_keys, sync_roles, unmatched_specs

# What the domain apps will bring (their model and action permissions), to check the role data.
LATER = {
    "payments.view_payment", "payments.add_payment", "payments.change_payment", "payments.delete_payment",
    "payments.view_customer", "payments.view_refund", "payments.add_refund",
    "payments.cancel_payment", "payments.recover_payment", "payments.refund_payment", "payments.approve_refund",
    "events.view_event", "events.change_event", "events.view_webhookdelivery", "events.replay_webhookdelivery",
    "ledger.view_journal", "ledger.add_journal", "ledger.delete_entry",
    "reconciliation.view_discrepancy", "reconciliation.resolve_discrepancy", "reconciliation.add_settlementreport",
    "merchants.view_merchant", "merchants.change_merchant", "merchants.view_apikey", "merchants.change_apikey",
    "audit.view_auditlogentry", "auth.add_user", "auth.change_group", "staff.access_all_merchants",
}


class TestRoleData:
    def test_support_reads_payments_customers_events_and_does_no_money_actions(self):
        support = role_permission_keys("support", LATER)
        reads = {"payments.view_payment", "payments.view_customer", "events.view_event", "merchants.view_merchant"}
        assert reads <= support
        assert all(key.split(".")[1].startswith("view_") for key in support)

    def test_operations_adds_cancel_recover_and_webhook_retries(self):
        operations = role_permission_keys("operations", LATER)
        assert role_permission_keys("support", LATER) < operations
        assert {"payments.cancel_payment", "payments.recover_payment", "events.replay_webhookdelivery"} <= operations
        assert not {"payments.refund_payment", "payments.add_refund", "ledger.view_journal"} & operations

    def test_finance_adds_refunds_reconciliation_and_ledger_reads(self):
        finance = role_permission_keys("finance", LATER)
        assert role_permission_keys("operations", LATER) < finance
        assert {"payments.refund_payment", "payments.add_refund", "payments.approve_refund", "ledger.view_journal",
                "reconciliation.resolve_discrepancy", "reconciliation.add_settlementreport"} <= finance
        assert "staff.access_all_merchants" not in finance
        assert "payments.change_payment" not in finance  # no raw editing of payments

    def test_admin_has_everything_except_writes_to_ledger_events_and_audit(self):
        admin = role_permission_keys("admin", LATER)
        assert role_permission_keys("finance", LATER) < admin
        assert {"auth.add_user", "auth.change_group", "merchants.change_apikey", "staff.access_all_merchants",
                "audit.view_auditlogentry", "payments.change_payment"} <= admin
        assert not {"ledger.add_journal", "ledger.delete_entry", "events.change_event"} & admin

    def test_specs_waiting_for_their_app_are_reported(self):
        assert "payments.view_*" in unmatched_specs({"auth.add_user"})
        assert "payments.view_*" not in unmatched_specs(LATER)


@pytest.mark.django_db
class TestSync:
    def test_migration_created_the_groups(self):
        assert set(Group.objects.filter(name__in=ROLE_NAMES).values_list("name", flat=True)) == set(ROLE_NAMES)

    def test_admin_group_holds_existing_permissions(self):
        admin = Group.objects.get(name="admin")
        keys = {f"{p.content_type.app_label}.{p.codename}" for p in admin.permissions.select_related("content_type")}
        assert {"auth.add_user", "auth.change_group", "staff.access_all_merchants", "audit.view_auditlogentry"} <= keys
        assert not any(key.startswith("audit.") and not key.split(".")[1].startswith("view_") for key in keys)

    def test_a_later_apps_permissions_land_in_the_roles_after_migrate(self):
        # A model of an app that lands later (its content type and permissions, as migrate makes them).
        # (get_or_create: the payments app has landed since, with these very permissions)
        ct, _ = ContentType.objects.get_or_create(app_label="payments", model="payment")
        view, _ = Permission.objects.get_or_create(content_type=ct, codename="view_payment",
                                                   defaults={"name": "Can view payment"})
        refund, _ = Permission.objects.get_or_create(content_type=ct, codename="refund_payment",
                                                     defaults={"name": "Can refund payment"})
        last_app = [c for c in apps.get_app_configs() if c.models_module is not None][-1]
        _sync_roles_after_migrate(sender=last_app, using="default")
        for role in ("support", "operations", "finance", "admin"):
            assert Group.objects.get(name=role).permissions.filter(pk=view.pk).exists()
        assert not Group.objects.get(name="operations").permissions.filter(pk=refund.pk).exists()
        assert Group.objects.get(name="finance").permissions.filter(pk=refund.pk).exists()

    def test_post_migrate_of_an_earlier_app_does_nothing(self):
        Group.objects.filter(name="support").delete()
        _sync_roles_after_migrate(sender=apps.get_app_config("auth"), using="default")
        assert not Group.objects.filter(name="support").exists()

    def test_sync_makes_groups_exact(self):
        support = Group.objects.get(name="support")
        support.permissions.add(Permission.objects.get(codename="add_user"))
        Group.objects.filter(name="finance").delete()
        counts = sync_roles()
        assert not support.permissions.filter(codename="add_user").exists()
        assert Group.objects.filter(name="finance").exists()
        assert counts["admin"] == Group.objects.get(name="admin").permissions.count()

    def test_sync_roles_command_prints_json(self, capsys):
        call_command("sync_roles")
        out = json.loads(capsys.readouterr().out)
        assert set(out["roles"]) == set(ROLE_NAMES)
        assert isinstance(out["pending_specs"], list)

    def test_role_changes_are_audited(self):
        from payera.audit.models import AuditLogEntry

        support = Group.objects.get(name="support")
        support.permissions.add(Permission.objects.get(codename="add_user"))
        sync_roles()
        ct = ContentType.objects.get_for_model(Group)
        assert AuditLogEntry.objects.filter(content_type=ct, object_pk=str(support.pk)).count() >= 2


@pytest.mark.django_db
def test_the_data_migration_alone_creates_the_groups():
    import importlib

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    migration = importlib.import_module("payera.staff.migrations.0002_role_groups")
    Group.objects.filter(name__in=ROLE_NAMES).delete()
    state_apps = MigrationExecutor(connection).loader.project_state(("staff", "0002_role_groups")).apps
    with connection.schema_editor(atomic=False) as schema_editor:
        migration.create_role_groups(state_apps, schema_editor)
    assert set(Group.objects.filter(name__in=ROLE_NAMES).values_list("name", flat=True)) == set(ROLE_NAMES)
    assert Group.objects.get(name="admin").permissions.filter(codename="add_user").exists()
