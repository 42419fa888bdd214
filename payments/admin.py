"""Back office: read-mostly. Money, statuses and card data are read-only; the decline-code
table is editable (it overrides the adapters' mapping)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied

from payera.core.errors import PayeraError
from payera.staff.access import staff_can_access_merchant, staff_filter_merchants
from payments.models import (
    BinRange,
    Capture,
    DeclineCode,
    Dispute,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    PspWebhook,
    Refund,
    RoutingRule,
    SepaMandate,
    StuckItem,
    Subscription,
    SubscriptionCharge,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AttemptInline(admin.TabularInline):
    model = PaymentAttempt
    fields = ("id", "sequence", "connector", "status", "decline_code", "psp_amount", "psp_currency", "error",
              "needs_attention", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class EventInline(admin.TabularInline):
    model = PaymentEvent
    fields = ("created_at", "object_type", "object_id", "transition", "from_status", "to_status", "actor")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ("id", "merchant", "status", "amount", "currency", "amount_captured", "amount_refunded",
                    "review_reason", "created_at")
    list_filter = ("status", "capture_method", "currency")
    search_fields = ("id", "merchant__id")
    exclude = ("metadata",)
    inlines = [AttemptInline, EventInline]


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdmin):
    list_display = ("id", "payment", "connector", "status", "decline_code", "needs_attention", "inquiries",
                    "next_inquiry_at", "created_at")
    list_filter = ("status", "connector", "needs_attention")
    search_fields = ("id", "payment__id", "psp_reference")


@admin.register(Capture)
class CaptureAdmin(ReadOnlyAdmin):
    list_display = ("id", "payment", "amount", "currency", "fee", "status", "created_at")
    list_filter = ("status",)


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("id", "payment", "amount", "currency", "status", "failure_code", "created_at")
    list_filter = ("status",)
    search_fields = ("id", "payment__id")


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ("id", "payment", "amount", "currency", "fee", "reason", "status", "connector", "created_at")
    list_filter = ("status", "reason", "connector")
    search_fields = ("id", "payment__id", "psp_dispute_id")


@admin.register(PspWebhook)
class PspWebhookAdmin(ReadOnlyAdmin):
    list_display = ("connector", "event_id", "kind", "reference", "status", "tries", "note", "received_at")
    list_filter = ("connector", "status", "kind")
    search_fields = ("event_id", "reference")


@admin.register(DeclineCode)
class DeclineCodeAdmin(admin.ModelAdmin):
    list_display = ("psp", "psp_code", "code", "decline_class", "updated_at")
    list_filter = ("psp", "decline_class")
    list_editable = ("code", "decline_class")


@admin.register(SepaMandate)
class SepaMandateAdmin(ReadOnlyAdmin):
    """SEPA mandates: the evidence of the shopper's authorization. The account shows masked
    (country and last 4, through the payment method's str); the IBAN is only stored encrypted."""

    list_display = ("id", "reference", "merchant", "payment_method", "status", "signed_at", "shopper_ip")
    list_filter = ("status",)
    search_fields = ("id", "reference", "payment_method__id")
    fields = ("id", "reference", "merchant", "payment_method", "status", "signed_at", "shopper_ip",
              "shopper_user_agent", "created_at")
    readonly_fields = fields


@admin.register(StuckItem)
class StuckItemAdmin(ReadOnlyAdmin):
    """What the stuck-state sweeper re-drove or flagged; open items first. Read-only: the sweeper
    clears an item once its object moved on."""

    list_display = ("object_type", "object_id", "state", "since", "sla_seconds", "is_flagged", "redrives",
                    "last_result", "reason", "cleared_at")
    list_filter = ("object_type", "state", ("cleared_at", admin.EmptyFieldListFilter),
                   ("flagged_at", admin.EmptyFieldListFilter))
    search_fields = ("object_id", "payment__id")
    list_select_related = ("payment",)
    ordering = ("-cleared_at", "-since")

    @admin.display(boolean=True, description="flagged")
    def is_flagged(self, obj: StuckItem) -> bool:
        return obj.flagged_at is not None and obj.cleared_at is None


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    """Per-merchant routing (operations edits; validated by RoutingRule.clean; audited). A
    merchant without enabled rules is routed by its ordered connectors list."""

    list_display = ("merchant", "priority", "connector", "weight", "currencies", "min_amount", "max_amount", "brands",
                    "bin_countries", "method_types", "enabled", "updated_at")
    list_filter = ("enabled", "connector")
    search_fields = ("merchant__id", "merchant__name", "connector")
    list_select_related = ("merchant",)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "merchant":
            from payera.merchants.models import Merchant

            kwargs["queryset"] = staff_filter_merchants(request.user, Merchant.objects.all(), field="pk")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if not staff_can_access_merchant(request.user, obj.merchant_id):
            raise PermissionDenied
        super().save_model(request, obj, form, change)


@admin.register(BinRange)
class BinRangeAdmin(admin.ModelAdmin):
    list_display = ("prefix", "country", "issuer", "updated_at")
    search_fields = ("prefix", "country", "issuer")
class SubscriptionChargeInline(admin.TabularInline):
    model = SubscriptionCharge
    fields = ("period", "try_number", "idempotency_key", "payment", "status", "decline_code", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """Read-only; the one action cancels (payments.cancel_subscription: the operations role)."""

    list_display = ("id", "merchant", "customer", "status", "amount", "currency", "interval", "interval_count",
                    "current_period", "next_charge_at", "retries", "created_at")
    list_filter = ("status", "interval", "currency")
    search_fields = ("=id", "=merchant__id", "=customer__id")
    exclude = ("metadata",)
    inlines = [SubscriptionChargeInline]
    actions = ["cancel_subscriptions"]

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("payments.cancel_subscription")

    @admin.action(description="Cancel selected subscriptions (no further charge)", permissions=["cancel"])
    def cancel_subscriptions(self, request, queryset):
        from payments.services import subscription_cancel

        done = 0
        for sub in queryset.select_related("merchant"):
            try:
                subscription_cancel(merchant=sub.merchant, subscription_id=sub.id, actor=f"staff:{request.user.pk}")
                done += 1
            except PayeraError as exc:
                self.message_user(request, f"{sub.id}: {exc.message}", messages.ERROR)
        self.message_user(request, f"Canceled {done} subscription(s).", messages.SUCCESS)
