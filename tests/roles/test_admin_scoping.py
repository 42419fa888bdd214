"""The admin mixin: list, detail and actions of a merchant-owned model show and touch only the
merchants a staff member was granted. Run against the real Merchant model on an admin site of
the test's own (the merchants app's admin is not changed here)."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.test import RequestFactory

from payera.merchants.models import Merchant
from payera.staff.access import staff_grant_merchant
from payera.staff.admin import MerchantScopedAdminMixin

pytestmark = pytest.mark.django_db


class ScopedMerchantAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    merchant_field = "pk"
    actions = ["rename"]

    @admin.action(permissions=["change"])
    def rename(self, request, queryset):
        queryset.update(name="renamed")


@pytest.fixture
def model_admin():
    return ScopedMerchantAdmin(Merchant, admin.AdminSite(name="scoped_test"))


@pytest.fixture
def ops(django_user_model):
    user = django_user_model.objects.create_user("olive", password="a-long-password-123", is_staff=True)
    user.groups.add(Group.objects.get(name="operations"))
    user.user_permissions.add(Permission.objects.get(codename="change_merchant"))
    return django_user_model.objects.get(pk=user.pk)


def _request(user, method="get", data=None):
    request = getattr(RequestFactory(), method)("/admin/merchants/merchant/", data or {})
    request.user = user
    return request


def test_list_detail_and_actions_are_limited_to_granted_merchants(model_admin, ops):
    a, b = Merchant.objects.create(name="A"), Merchant.objects.create(name="B")
    staff_grant_merchant(user=ops, merchant_id=a.pk)
    request = _request(ops)
    assert list(model_admin.get_queryset(request)) == [a]
    assert model_admin.has_view_permission(request, a) and not model_admin.has_view_permission(request, b)
    assert model_admin.has_change_permission(request, a) and not model_admin.has_change_permission(request, b)
    assert model_admin.get_object(request, b.pk) is None  # by URL: "does not exist"
    # An action posted with both ids touches only the granted merchant.
    post = _request(ops, "post", {"action": "rename", "_selected_action": [a.pk, b.pk]})
    post._dont_enforce_csrf_checks = True
    model_admin.response_action(post, model_admin.get_queryset(post))
    assert Merchant.objects.get(pk=a.pk).name == "renamed"
    assert Merchant.objects.get(pk=b.pk).name == "B"


def test_admin_role_sees_every_merchant(model_admin, django_user_model):
    a, b = Merchant.objects.create(name="A"), Merchant.objects.create(name="B")
    boss = django_user_model.objects.create_user("ben", password="a-long-password-123", is_staff=True)
    boss.groups.add(Group.objects.get(name="admin"))
    assert set(model_admin.get_queryset(_request(boss))) == {a, b}


def test_custom_views_check_the_same_rule(model_admin, ops):
    from django.core.exceptions import PermissionDenied

    b = Merchant.objects.create(name="B")
    with pytest.raises(PermissionDenied):
        model_admin.merchant_access_check(_request(ops), b)
