"""Back-office pages for merchants and API keys: read-mostly; changes go through services.

API keys can not be added here (their secret must be shown once, to the person who asked:
use `manage.py api_key_create`); they can be revoked. A merchant's status changes only by the
suspend/reactivate actions.
"""

from __future__ import annotations

from django.contrib import admin, messages

from payera.core.errors import PayeraError
from payera.merchants.models import ApiKey, Merchant
from payera.merchants.services import api_key_revoke, merchant_reactivate, merchant_suspend


def _run(modeladmin, request, queryset, action, verb: str) -> None:
    done = 0
    for obj in queryset:
        try:
            action(obj.pk)
            done += 1
        except PayeraError as exc:
            modeladmin.message_user(request, f"{obj}: {exc.message}", level=messages.WARNING)
    if done:
        modeladmin.message_user(request, f"{done} {verb}.", level=messages.SUCCESS)


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
        "created_at",
        "updated_at",
    )
    inlines = [ApiKeyInline]
    actions = ["suspend", "reactivate"]

    def has_add_permission(self, request) -> bool:
        return False  # merchants are created by `manage.py create_merchant` (validation + first key)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Suspend selected merchants (their API keys stop working)", permissions=["change"])
    def suspend(self, request, queryset):
        _run(self, request, queryset, lambda pk: merchant_suspend(merchant_id=pk), "suspended")

    @admin.action(description="Reactivate selected merchants", permissions=["change"])
    def reactivate(self, request, queryset):
        _run(self, request, queryset, lambda pk: merchant_reactivate(merchant_id=pk), "reactivated")


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

    @admin.action(description="Revoke selected API keys now", permissions=["change"])
    def revoke(self, request, queryset):
        _run(self, request, queryset, lambda pk: api_key_revoke(api_key_id=pk), "revoked")
