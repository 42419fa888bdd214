"""Back office: events read-only; deliveries with their attempt log and replay actions, which
need the `events.replay_delivery` permission (the operations role)."""

from __future__ import annotations

from django.contrib import admin

from payera.backoffice.actions import reason_action
from payera.backoffice.models import StaffActionOutcome
from payera.events import services
from payera.events.models import DeliveryAttempt, Event, WebhookDelivery, WebhookEndpoint

REPLAY_PERMISSION = "events.replay_delivery"


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReplayPermissionMixin:
    def has_replay_permission(self, request) -> bool:
        return request.user.has_perm(REPLAY_PERMISSION)


@admin.register(Event)
class EventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "type", "merchant_id", "created_at", "relayed_at")
    list_filter = ("type",)
    search_fields = ("=id", "=merchant_id")
    date_hierarchy = "created_at"
    readonly_fields = ("id", "merchant_id", "type", "api_version", "data", "created_at", "relayed_at")


class DeliveryAttemptInline(ReadOnlyMixin, admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    fields = ("number", "started_at", "succeeded", "status_code", "latency_ms", "error", "response_body")
    readonly_fields = fields


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReplayPermissionMixin, ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "event", "endpoint", "status", "attempt_count", "next_attempt_at", "last_error")
    list_filter = ("status",)
    search_fields = ("=id", "=merchant_id", "=event__id", "=endpoint__id")
    list_select_related = ("event", "endpoint")
    readonly_fields = (
        "id", "event", "endpoint", "merchant_id", "status", "attempt_count", "next_attempt_at", "lease_until",
        "window_started_at", "last_attempt_at", "last_error", "completed_at", "replay_count", "created_at",
    )  # fmt: skip
    inlines = [DeliveryAttemptInline]
    actions = ["replay_deliveries"]

    @admin.action(description="Replay selected deliveries", permissions=["replay"])
    def replay_deliveries(self, request, queryset):
        return reason_action(self, request, queryset, action="events.replay_delivery", title="Replay deliveries",
                             button="Replay", perform=lambda obj, data: (
                                 services.delivery_replay(delivery_id=obj.pk) and StaffActionOutcome.DONE,
                                 "queued for replay"))


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReplayPermissionMixin, ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "merchant_id", "url", "status", "consecutive_failures", "failing_since", "created_at")
    list_filter = ("status",)
    search_fields = ("=id", "=merchant_id", "url")
    # The secret ciphertexts are not shown at all.
    fields = (
        "id", "merchant_id", "url", "description", "enabled_events", "status", "disabled_reason",
        "consecutive_failures", "failing_since", "previous_secret_expires_at", "created_at", "updated_at",
    )  # fmt: skip
    readonly_fields = fields
    actions = ["replay_dead_letters"]

    @admin.action(description="Replay all dead-lettered deliveries", permissions=["replay"])
    def replay_dead_letters(self, request, queryset):
        def perform(obj, data):
            total = services.endpoint_replay_dead_letters(endpoint_id=obj.pk)
            return StaffActionOutcome.DONE, f"{total} dead-lettered deliveries queued for replay"

        return reason_action(self, request, queryset, action="events.replay_dead_letters",
                             title="Replay dead-lettered deliveries", button="Replay", perform=perform)
