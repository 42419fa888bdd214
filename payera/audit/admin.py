"""Read-only admin for the audit trail: nobody adds, changes or deletes a record here; seeing
them takes the `audit.view_*` permission. Staff limited to some merchants see only records of
those merchants (payera.staff.access)."""

from __future__ import annotations

from auditlog.admin import LogEntryAdmin
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from payera.audit.models import AuditLogEntry, SecurityEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        return {}


if admin.site.is_registered(AuditLogEntry):
    admin.site.unregister(AuditLogEntry)  # auditlog registers the swapped model with its own admin


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(ReadOnlyAdmin, LogEntryAdmin):
    list_display = [
        "created", "resource_url", "action", "msg_short", "user_url", "api_key_id", "remote_addr", "request_id",
    ]
    list_filter = ["action", "content_type"]
    search_fields = ["object_repr", "object_pk", "request_id", "api_key_id", "merchant_id", "object_merchant_id"]
    readonly_fields = [
        "created", "resource_url", "action", "user_url", "msg", "api_key_id", "merchant_id",
        "object_merchant_id", "remote_addr", "request_id",
    ]
    fieldsets = [
        (None, {"fields": ["created", "user_url", "api_key_id", "merchant_id", "remote_addr", "request_id"]}),
        ("Object", {"fields": ["resource_url", "object_merchant_id"]}),
        ("Changes", {"fields": ["action", "msg"]}),
    ]
    show_full_result_count = False

    def get_queryset(self, request):
        from payera.staff.access import staff_filter_merchants

        return staff_filter_merchants(request.user, super().get_queryset(request), field="object_merchant_id")

    @admin.display(description="Resource")
    def resource_url(self, obj):
        """auditlog's link to the changed object, with its id quoted as the admin quotes ids: the
        admin reads `_2F` in a URL as `/`, so `mer_2F…` unquoted leads to "doesn't exist"."""
        viewname = f"admin:{obj.content_type.app_label}_{obj.content_type.model}_change"
        try:
            link = reverse(viewname, args=[quote(obj.object_pk if obj.object_id is None else obj.object_id)])
        except NoReverseMatch:
            return obj.object_repr
        return format_html('<a href="{}">{} - {}</a>', link, obj.content_type, obj.object_repr)


@admin.register(SecurityEvent)
class SecurityEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "event", "kind", "identifier", "reason", "user", "remote_addr", "request_id"]
    list_filter = ["event", "kind"]
    search_fields = ["identifier", "request_id", "remote_addr"]
    list_select_related = ["user"]
    show_full_result_count = False
