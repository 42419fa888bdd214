"""django-guardian object-level access: staff limited to some merchants, failing closed.

The Merchant model (payera.merchants, built in parallel) is not in this branch yet, so the rule is
tested with `STAFF_MERCHANT_MODEL = "auth.Group"` standing in for it: same guardian tables, same
code path (the model is resolved lazily). `TestWithRealMerchant` runs once merchants.Merchant exists.
"""

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType

from payera.audit.models import AuditLogEntry
from payera.staff.access import (
    object_access_grant,
    object_access_revoke,
    object_ids_granted,
    staff_can_access_merchant,
    staff_filter_merchants,
    staff_grant_merchant,
    staff_merchant_ids,
    staff_revoke_merchant,
)
from tests.backoffice.staff import otp_force_login

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-password-123"


@pytest.fixture
def merchants(settings):
    settings.STAFF_MERCHANT_MODEL = "auth.Group"
    return Group.objects.create(name="merchant-a"), Group.objects.create(name="merchant-b")


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("sue", password=PASSWORD, is_staff=True)


def test_generic_object_grants_direct_and_through_groups(staff, django_user_model):
    team = Group.objects.create(name="team-emea")
    target, other = Group.objects.create(name="t1"), Group.objects.create(name="t2")
    object_access_grant(user_or_group=staff, obj=target)
    assert object_ids_granted(staff, Group) == {str(target.pk)}
    object_access_grant(user_or_group=team, obj=other)
    staff.groups.add(team)
    assert object_ids_granted(staff, Group) == {str(target.pk), str(other.pk)}
    object_access_revoke(user_or_group=staff, obj=target)
    assert object_ids_granted(staff, Group) == {str(other.pk)}
    assert staff.has_perm("auth.view_group", other)  # guardian's backend agrees


def test_staff_without_grants_sees_no_merchant(merchants, staff):
    a, _ = merchants
    assert staff_merchant_ids(staff) == set()
    assert not staff_can_access_merchant(staff, str(a.pk))


def test_staff_limited_to_one_merchant(merchants, staff):
    a, b = merchants
    staff_grant_merchant(user=staff, merchant_id=str(a.pk))
    assert staff_merchant_ids(staff) == {str(a.pk)}
    assert staff_can_access_merchant(staff, str(a.pk))
    assert not staff_can_access_merchant(staff, str(b.pk))
    assert list(staff_filter_merchants(staff, Group.objects.filter(pk__in=[a.pk, b.pk]), field="pk")) == [a]
    staff_revoke_merchant(user=staff, merchant_id=str(a.pk))
    assert not staff_can_access_merchant(staff, str(a.pk))


def test_grant_of_an_unknown_merchant_fails(merchants, staff):
    with pytest.raises(Group.DoesNotExist):
        staff_grant_merchant(user=staff, merchant_id="999999")


def test_all_merchants_permission_superuser_and_admin_role(merchants, staff, django_user_model):
    a, b = merchants
    staff.user_permissions.add(Permission.objects.get(codename="access_all_merchants"))
    staff = django_user_model.objects.get(pk=staff.pk)  # fresh permission cache
    assert staff_merchant_ids(staff) is None
    assert staff_can_access_merchant(staff, str(b.pk))
    boss = django_user_model.objects.create_superuser("boss", password=PASSWORD)
    assert staff_can_access_merchant(boss, str(a.pk))
    admin_member = django_user_model.objects.create_user("adm", password=PASSWORD, is_staff=True)
    admin_member.groups.add(Group.objects.get(name="admin"))
    assert staff_merchant_ids(admin_member) is None
    finance_member = django_user_model.objects.create_user("fin", password=PASSWORD, is_staff=True)
    finance_member.groups.add(Group.objects.get(name="finance"))
    assert staff_merchant_ids(finance_member) == set()


def test_inactive_or_non_staff_users_see_nothing(merchants, staff):
    a, _ = merchants
    staff_grant_merchant(user=staff, merchant_id=str(a.pk))
    staff.is_active = False
    assert not staff_can_access_merchant(staff, str(a.pk))
    staff.is_active, staff.is_staff = True, False
    assert not staff_can_access_merchant(staff, str(a.pk))


def test_missing_merchant_model_fails_closed(settings, staff):
    settings.STAFF_MERCHANT_MODEL = "merchants.DoesNotExist"
    assert staff_merchant_ids(staff) == set()


def test_audit_admin_shows_a_limited_auditor_only_their_merchants_records(merchants, staff, client, monkeypatch):
    from payera.audit import registry

    a, b = merchants
    monkeypatch.setitem(registry._merchant_attr, Group, "pk")  # records of a "merchant" are its own
    a.name, b.name = "merchant-a2", "merchant-b2"
    a.save()
    b.save()
    staff.user_permissions.add(Permission.objects.get(codename="view_auditlogentry"))
    staff_grant_merchant(user=staff, merchant_id=str(a.pk))
    ct = ContentType.objects.get_for_model(Group)
    record_a = AuditLogEntry.objects.filter(content_type=ct, object_pk=str(a.pk)).latest("pk")
    record_b = AuditLogEntry.objects.filter(content_type=ct, object_pk=str(b.pk)).latest("pk")
    assert (record_a.object_merchant_id, record_b.object_merchant_id) == (str(a.pk), str(b.pk))
    otp_force_login(client, staff)
    page = client.get("/admin/audit/auditlogentry/")
    assert page.status_code == 200
    shown = {entry.pk for entry in page.context["cl"].result_list}
    assert record_a.pk in shown and record_b.pk not in shown
    assert client.get(f"/admin/audit/auditlogentry/{record_b.pk}/change/").status_code == 302  # "does not exist"


@pytest.mark.skipif(
    "merchants.merchant" not in {m._meta.label_lower for m in apps.get_models()},
    reason="merchants.Merchant lands with the merchants branch",
)
class TestWithRealMerchant:
    def test_limit_to_a_real_merchant(self, staff):
        Merchant = apps.get_model("merchants", "Merchant")
        a, b = Merchant.objects.create(name="A"), Merchant.objects.create(name="B")
        staff_grant_merchant(user=staff, merchant_id=a.pk)
        assert staff_can_access_merchant(staff, a.pk) and not staff_can_access_merchant(staff, b.pk)
        assert list(staff_filter_merchants(staff, Merchant.objects.all(), field="pk")) == [a]


def test_staff_merchant_access_command(staff, capsys):
    import json

    from django.core.management import CommandError, call_command

    Merchant = apps.get_model("merchants", "Merchant")
    a, b = Merchant.objects.create(name="A"), Merchant.objects.create(name="B")
    call_command("staff_merchant_access", "grant", "sue", a.pk, b.pk)
    assert json.loads(capsys.readouterr().out)["merchants"] == sorted([a.pk, b.pk])
    call_command("staff_merchant_access", "revoke", "sue", b.pk)
    assert json.loads(capsys.readouterr().out)["merchants"] == [a.pk]
    with pytest.raises(CommandError):
        call_command("staff_merchant_access", "grant", "sue", "mer_doesnotexist")
    with pytest.raises(CommandError):
        call_command("staff_merchant_access", "list", "nobody")


@pytest.mark.parametrize("action", ["grant", "revoke"])
def test_staff_merchant_access_command_with_an_unknown_merchant_changes_nothing(staff, action):
    """`grant sue A mer_typo` granted A and then failed, and `revoke sue mer_typo` (a mistyped
    id) exited 0 with the real grant left in place: the operator believed access was removed.
    Every id is checked first; an unknown one fails the whole command and changes nothing."""
    from django.core.management import CommandError, call_command

    Merchant = apps.get_model("merchants", "Merchant")
    a, b = Merchant.objects.create(name="A"), Merchant.objects.create(name="B")
    staff_grant_merchant(user=staff, merchant_id=b.pk)
    with pytest.raises(CommandError, match="mer_typo"):
        call_command("staff_merchant_access", action, "sue", a.pk if action == "grant" else b.pk, "mer_typo")
    assert staff_merchant_ids(staff) == {b.pk}
