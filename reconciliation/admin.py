"""Back office for settlement runs and payouts: read only; money moves only through the services
(actions need the finance role's `reconciliation.*` permissions); every page is merchant-scoped."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpResponse
from django.utils import timezone

from payera.core.errors import PayeraError
from payera.staff.admin import MerchantScopedAdminMixin
from reconciliation.exports import payout_file_csv, payout_statement_csv
from reconciliation.models import MerchantPayoutSettings, Payout, SettlementItem, SettlementRun
from reconciliation.selectors import payout_statement
from reconciliation.services import payout_mark_failed, payout_mark_in_transit, payout_mark_paid


class ReadOnlyAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class SettlementItemInline(admin.TabularInline):
    model = SettlementItem
    extra = 0
    can_delete = False
    fields = ("journal_reference", "kind", "occurred_at", "amount", "entry_id")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SettlementRun)
class SettlementRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "merchant_id", "currency", "cutoff_date", "status", "amount", "item_count", "payout_id",
                    "created_at")
    list_filter = ("status", "currency", "cutoff_date")
    search_fields = ("id", "merchant__id", "journal_reference")
    readonly_fields = ("id", "merchant", "currency", "cutoff_date", "cutoff_at", "status", "amount", "credits",
                       "debits", "carried_amount", "item_count", "journal_reference", "payout", "created_at")
    fields = readonly_fields
    inlines = [SettlementItemInline]


@admin.register(MerchantPayoutSettings)
class MerchantPayoutSettingsAdmin(ReadOnlyAdmin):
    list_display = ("merchant_id", "payouts_enabled", "minimum_payout_amount", "reserve_bps", "bank_account_masked",
                    "updated_at")
    readonly_fields = ("merchant", "payouts_enabled", "minimum_payout_amount", "reserve_bps", "bank_account_masked",
                       "updated_at")
    fields = readonly_fields
    search_fields = ("merchant__id",)


def _csv(content: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    list_display = ("id", "merchant_id", "currency", "amount", "status", "payout_date", "bank_account_masked",
                    "created_at")
    list_filter = ("status", "currency", "payout_date")
    search_fields = ("id", "merchant__id")
    readonly_fields = ("id", "merchant", "currency", "amount", "status", "payout_date", "available_before",
                       "reserve_kept", "bank_account_masked", "failure_reason", "journal_reference", "created_at",
                       "in_transit_at", "paid_at", "failed_at")
    fields = readonly_fields
    actions = ["mark_in_transit", "mark_paid", "mark_failed", "export_payout_file", "export_statement"]

    def _perm(self, request, codename: str) -> bool:
        return request.user.has_perm(f"reconciliation.{codename}")

    def has_mark_paid_permission(self, request) -> bool:
        return self._perm(request, "mark_paid_payout")

    def has_mark_failed_permission(self, request) -> bool:
        return self._perm(request, "mark_failed_payout")

    def has_export_permission(self, request) -> bool:
        return self._perm(request, "export_payout")

    def _apply(self, request, queryset, service, verb: str) -> None:
        done = 0
        for payout in queryset:  # the merchant-scoped queryset: other merchants' ids are dropped
            self.merchant_access_check(request, payout)
            try:
                service(payout.pk)
                done += 1
            except PayeraError as exc:
                self.message_user(request, f"{payout.pk}: {exc.message}", level=messages.WARNING)
        if done:
            self.message_user(request, f"{done} payout(s) {verb}.", level=messages.SUCCESS)

    @admin.action(description="Mark in transit (sent to the bank)", permissions=["mark_paid"])
    def mark_in_transit(self, request, queryset):
        self._apply(request, queryset, lambda pk: payout_mark_in_transit(payout_id=pk), "in transit")

    @admin.action(description="Mark paid (the bank confirmed)", permissions=["mark_paid"])
    def mark_paid(self, request, queryset):
        self._apply(request, queryset, lambda pk: payout_mark_paid(payout_id=pk), "marked paid")

    @admin.action(description="Mark failed (returns the money to available)", permissions=["mark_failed"])
    def mark_failed(self, request, queryset):
        reason = f"marked failed by {request.user.get_username()}"
        self._apply(request, queryset, lambda pk: payout_mark_failed(payout_id=pk, reason=reason), "marked failed")

    @admin.action(description="Export the payout file (CSV)", permissions=["export"])
    def export_payout_file(self, request, queryset):
        payouts = list(queryset.order_by("created_at", "id"))
        return _csv(payout_file_csv(payouts), f"payouts-{timezone.now():%Y%m%d%H%M%S}.csv")

    @admin.action(description="Export settlement statements (CSV)", permissions=["export"])
    def export_statement(self, request, queryset):
        parts = []
        for i, payout in enumerate(queryset.order_by("created_at", "id")):
            content = payout_statement_csv(payout_statement(payout=payout))
            parts.append(content if i == 0 else content.split("\n", 1)[1])
        return _csv("".join(parts), "payout-statements.csv")


from reconciliation import admin_reports  # noqa: E402,F401 - registers the reconciliation (report) admins
