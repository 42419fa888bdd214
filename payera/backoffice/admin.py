"""TOTP devices in the admin without their secret: django-otp's own admin shows and edits the key
and a QR code of it. Here a device can be seen, renamed and deleted (an admin removing a lost
phone), never read out; new devices come from `manage.py staff_otp_enrol`."""

from __future__ import annotations

from django.contrib import admin
from django_otp.plugins.otp_totp.models import TOTPDevice

if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)


@admin.register(TOTPDevice)
class StaffTotpDeviceAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "confirmed", "created_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "user__email", "name")
    fields = ("user", "name", "confirmed", "created_at", "last_used_at", "throttling_failure_count")
    readonly_fields = ("user", "confirmed", "created_at", "last_used_at", "throttling_failure_count")

    def has_add_permission(self, request) -> bool:
        return False


from payera.backoffice.models import StaffAction  # noqa: E402


@admin.register(StaffAction)
class StaffActionAdmin(admin.ModelAdmin):
    """Read-only for everyone: the log of back-office actions and their reasons."""

    list_display = ("created_at", "action", "object_id", "merchant_id", "user", "outcome", "detail")
    list_filter = ("action", "outcome")
    search_fields = ("=object_id", "=merchant_id", "user__username")
    list_select_related = ("user",)
    show_full_result_count = False
    readonly_fields = ("created_at", "user", "action", "object_type", "object_id", "merchant_id", "reason",
                       "outcome", "detail")
    fields = readonly_fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_actions(self, request):
        return {}
