"""Back-office pages for merchants and API keys: read-mostly; changes go through services.

API keys can not be added here (their secret must be shown once, to the person who asked:
use `manage.py api_key_create`); they can be revoked. A merchant's status changes only by the
suspend/reactivate actions. Each action asks for a reason first (`payera.backoffice.actions`) and
needs its own permission: `merchants.suspend_merchant`, `merchants.revoke_apikey` (admin role).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin

from payera.backoffice.actions import reason_action
from payera.backoffice.card_numbers import holds_card_number
from payera.backoffice.models import StaffActionOutcome
from payera.merchants.errors import MerchantInvalidError
from payera.merchants.models import ApiKey, Merchant
from payera.merchants.services import (
    api_key_revoke,
    merchant_reactivate,
    merchant_suspend,
    validate_connectors,
    validate_fee_schedule,
)


class MerchantForm(forms.ModelForm):
    """The merchant's page checks what is typed as `create_merchant` does: connectors the router
    can use, a fee schedule that exists (an unknown one silently charged `standard` fees)."""

    class Meta:
        model = Merchant
        fields = ("name", "default_currency", "settlement_delay_days", "fee_schedule", "connectors",
                  "refund_approval_threshold", "refund_approval_thresholds")

    def _checked(self, check, name: str):
        value = self.cleaned_data.get(name)
        if holds_card_number(value):  # the site's forms refuse it as such, without quoting it
            return value
        try:
            return check(value)
        except MerchantInvalidError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_connectors(self):
        return self._checked(validate_connectors, "connectors")

    def clean_fee_schedule(self):
        return self._checked(validate_fee_schedule, "fee_schedule")


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("id", "prefix", "name", "scope", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    form = MerchantForm
    list_display = ("id", "name", "status", "default_currency", "settlement_delay_days", "created_at")
    list_filter = ("status", "default_currency")
    search_fields = ("id", "name")
    readonly_fields = ("id", "status", "created_at", "updated_at")
    fields = (
        "id",
        "name",
        "status",
        "default_currency",
        "settlement_delay_days",
        "fee_schedule",
        "connectors",
        "refund_approval_threshold",
        "refund_approval_thresholds",
        "created_at",
        "updated_at",
    )
    inlines = [ApiKeyInline]
    actions = ["suspend", "reactivate"]

    def has_add_permission(self, request) -> bool:
        return False  # merchants are created by `manage.py create_merchant` (validation + first key)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_suspend_permission(self, request) -> bool:
        return request.user.has_perm("merchants.suspend_merchant")

    @admin.action(description="Suspend selected merchants (their API keys stop working)", permissions=["suspend"])
    def suspend(self, request, queryset):
        return reason_action(self, request, queryset, action="merchants.suspend", title="Suspend merchants",
                             button="Suspend", perform=lambda obj, data: (
                                 merchant_suspend(merchant_id=obj.pk) and StaffActionOutcome.DONE, "suspended"))

    @admin.action(description="Reactivate selected merchants", permissions=["suspend"])
    def reactivate(self, request, queryset):
        return reason_action(self, request, queryset, action="merchants.reactivate", title="Reactivate merchants",
                             button="Reactivate", perform=lambda obj, data: (
                                 merchant_reactivate(merchant_id=obj.pk) and StaffActionOutcome.DONE, "reactivated"))


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("id", "prefix", "merchant", "name", "scope", "last_used_at", "expires_at", "revoked_at")
    list_filter = ("scope",)
    search_fields = ("id", "prefix", "merchant__id", "merchant__name")
    list_select_related = ("merchant",)
    fields = ("id", "merchant", "prefix", "name", "scope", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("merchants.revoke_apikey")

    @admin.action(description="Revoke selected API keys now", permissions=["revoke"])
    def revoke(self, request, queryset):
        return reason_action(self, request, queryset, action="merchants.revoke_api_key", title="Revoke API keys",
                             button="Revoke", perform=lambda obj, data: (
                                 api_key_revoke(api_key_id=obj.pk) and StaffActionOutcome.DONE, "revoked"))
