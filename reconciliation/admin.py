"""Back office for settlement runs and payouts: read only; money moves only through the services
(actions need the finance role's `reconciliation.*` permissions); every page is merchant-scoped.
Every table exports as CSV (`admin_csv.csv_export_action`, `reconciliation.export_payout`); the
bank file of payouts (clear accounts) has its own permission and is audited per payout; the
merchant statement for a period is a page of the payouts admin."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from payera.backoffice.actions import ReasonForm, reason_action
from payera.backoffice.models import StaffActionOutcome
from payera.core.errors import PayeraError
from payera.staff.access import staff_can_access_merchant
from payera.staff.admin import MerchantScopedAdminMixin
from reconciliation.admin_csv import csv_export_action
from reconciliation.admin_reports import csv_response
from reconciliation.exports import payout_statement_csv
from reconciliation.models import MerchantPayoutSettings, Payout, SettlementItem, SettlementRun
from reconciliation.selectors import payout_statement
from reconciliation.services import (
    payout_bank_file_export,
    payout_mark_failed,
    payout_mark_in_transit,
    payout_mark_paid,
    payout_mark_returned,
)
from reconciliation.statements import STATEMENT_COLUMNS, merchant_statement, merchant_statement_rows

RUN_CSV_COLUMNS = ("id", "merchant_id", "currency", "cutoff_date", "cutoff_at", "status", "amount", "credits",
                   "debits", "carried_amount", "item_count", "journal_reference", "payout_id", "created_at")
ITEM_CSV_COLUMNS = ("run_id", "merchant_id", "currency", "entry_id", "journal_reference", "kind", "occurred_at",
                    "amount")
SETTINGS_CSV_COLUMNS = ("merchant_id", "payouts_enabled", "minimum_payout_amounts", "reserve_bps",
                        "bank_account_masked", "updated_at")
PAYOUT_CSV_COLUMNS = ("id", "merchant_id", "currency", "amount", "status", "payout_date", "available_before",
                      "reserve_kept", "bank_account_masked", "failure_reason", "journal_reference", "created_at",
                      "in_transit_at", "paid_at", "failed_at")


class ReadOnlyAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_export_permission(self, request) -> bool:
        return request.user.has_perm("reconciliation.export_payout")


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
    actions = [
        csv_export_action("export_csv", RUN_CSV_COLUMNS, "settlement-runs",
                          description="Export the selected settlement runs (CSV)"),
        csv_export_action("export_items", ITEM_CSV_COLUMNS, "settlement-items",
                          description="Export the items of the selected settlement runs (CSV)",
                          rows=lambda runs: SettlementItem.objects.filter(run__in=runs)
                          .order_by("run__created_at", "run_id", "occurred_at", "id").values(*ITEM_CSV_COLUMNS)),
    ]


@admin.register(MerchantPayoutSettings)
class MerchantPayoutSettingsAdmin(ReadOnlyAdmin):
    list_display = ("merchant_id", "payouts_enabled", "minimum_payout_amounts", "reserve_bps", "bank_account_masked",
                    "updated_at")
    readonly_fields = ("merchant", "payouts_enabled", "minimum_payout_amounts", "reserve_bps", "bank_account_masked",
                       "updated_at")
    fields = readonly_fields
    search_fields = ("merchant__id",)
    actions = [csv_export_action("export_csv", SETTINGS_CSV_COLUMNS, "payout-settings",
                                 description="Export the selected payout settings (CSV)")]


def _csv(content: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class StatementForm(forms.Form):
    merchant = forms.CharField(max_length=40, help_text="The merchant's id (mer_…).")
    start = forms.DateField(help_text="First day (UTC), included.")
    end = forms.DateField(help_text="Last day (UTC), included.")
    currency = forms.CharField(max_length=3, required=False, help_text="Empty: every currency.")

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            raise forms.ValidationError("The period ends before it starts.")
        if data.get("end") == dt.date.max:  # the view reads up to the day after the last one
            raise forms.ValidationError(f"The period must end before {dt.date.max}.")
        return data


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
    actions = ["mark_in_transit", "mark_paid", "mark_failed", "mark_returned",
               csv_export_action("export_csv", PAYOUT_CSV_COLUMNS, "payouts",
                                 description="Export the selected payouts (CSV, masked accounts)"),
               "export_bank_file", "export_statement"]
    change_list_template = "admin/reconciliation/payout/change_list.html"

    def _perm(self, request, codename: str) -> bool:
        return request.user.has_perm(f"reconciliation.{codename}")

    def has_mark_paid_permission(self, request) -> bool:
        return self._perm(request, "mark_paid_payout")

    def has_mark_failed_permission(self, request) -> bool:
        return self._perm(request, "mark_failed_payout")

    def has_export_bank_file_permission(self, request) -> bool:
        return self._perm(request, "export_bank_file_payout")

    def _mark(self, request, queryset, *, action: str, title: str, button: str, service):
        """A reason first (the back office's action page), then the service on each selected payout
        of the user's merchants; each run is a `StaffAction` (who, why, outcome): paid and failed
        post ledger journals, in transit sends money to the bank."""

        def perform(payout, data):
            self.merchant_access_check(request, payout)  # the queryset is scoped already: belt and braces
            done = service(payout.pk)
            return StaffActionOutcome.DONE, f"payout {done.status}"

        return reason_action(self, request, queryset, action=f"reconciliation.payout_{action}", title=title,
                             button=button, perform=perform)

    @admin.action(description="Mark in transit (sent to the bank; asks why)", permissions=["mark_paid"])
    def mark_in_transit(self, request, queryset):
        return self._mark(request, queryset, action="mark_in_transit", title="Mark payouts in transit",
                          button="Mark in transit", service=lambda pk: payout_mark_in_transit(payout_id=pk))

    @admin.action(description="Mark paid (the bank confirmed; asks why)", permissions=["mark_paid"])
    def mark_paid(self, request, queryset):
        return self._mark(request, queryset, action="mark_paid", title="Mark payouts paid", button="Mark paid",
                          service=lambda pk: payout_mark_paid(payout_id=pk))

    @admin.action(description="Mark failed (returns the money to available; asks why)", permissions=["mark_failed"])
    def mark_failed(self, request, queryset):
        # `failure_reason` is the merchant's (API, payout.failed): neither the staff member's name nor
        # the reason typed here goes in it; both are in the staff action (and the audit trail)
        return self._mark(request, queryset, action="mark_failed", title="Mark payouts failed", button="Mark failed",
                          service=lambda pk: payout_mark_failed(payout_id=pk))

    @admin.action(description="Mark returned by the bank (a paid payout came back: money to available; asks why)",
                  permissions=["mark_failed"])
    def mark_returned(self, request, queryset):
        # as for a failure, the merchant sees `failure_reason` "returned", never the words typed here
        return self._mark(request, queryset, action="mark_returned", title="Mark paid payouts returned by the bank",
                          button="Mark returned", service=lambda pk: payout_mark_returned(payout_id=pk))

    @admin.action(description="Export the bank file (clear accounts; asks why, audited)",
                  permissions=["export_bank_file"])
    def export_bank_file(self, request, queryset):
        """A reason first (the back office's action page), then the file: every selected payout
        of the user's merchants, or a refusal of the whole file (the service checks again)."""
        form = ReasonForm(request.POST) if "confirm" in request.POST else ReasonForm()
        if "confirm" in request.POST and form.is_valid():
            payouts = list(queryset)  # merchant-scoped: other merchants' ids posted by hand are dropped
            for payout in payouts:
                self.merchant_access_check(request, payout)
            try:
                bank_file = payout_bank_file_export(user=request.user, payout_ids=[p.pk for p in payouts],
                                                    reason=form.cleaned_data["reason"])
            except PayeraError as exc:
                message = exc.message if exc.message.startswith("No bank file") else f"No bank file: {exc.message}"
                self.message_user(request, message, level=messages.ERROR)
                return None
            if bank_file.held:  # shown with the next page: the answer to this request is the file
                self.message_user(
                    request,
                    f"Held out of {bank_file.filename}: {', '.join(map(str, bank_file.held))}; they go in a file "
                    "once the merchant is reinstated.",
                    level=messages.WARNING,
                )
            response = _csv(bank_file.content, bank_file.filename)
            if bank_file.held:
                response["Payera-Held-Payouts"] = ",".join(h.payout_id for h in bank_file.held)
            return response  # admin views are never_cache (no-store)
        context = {**self.admin_site.each_context(request), "title": "Export the bank file", "form": form,
                   "objects": list(queryset), "action_name": request.POST.get("action", ""),
                   "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                   "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME, "opts": self.model._meta,
                   "button": "Export the bank file"}  # fmt: skip
        return TemplateResponse(request, "backoffice/action_reason.html", context)

    @admin.action(description="Export settlement statements (CSV)", permissions=["export"])
    def export_statement(self, request, queryset):
        parts = []
        for i, payout in enumerate(queryset.order_by("created_at", "id")):
            content = payout_statement_csv(payout_statement(payout=payout))
            parts.append(content if i == 0 else content.split("\n", 1)[1])
        return _csv("".join(parts), "payout-statements.csv")

    def get_urls(self):
        view = self.admin_site.admin_view(self.merchant_statement_view)
        return [path("merchant-statement/", view, name="reconciliation_payout_merchant_statement"),
                *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_export_statement": self.has_export_permission(request)}
        return super().changelist_view(request, extra_context=extra_context)

    def merchant_statement_view(self, request):
        """A merchant's statement for a period (opening, every balance transaction, closing, per
        currency and balance), as CSV: finance (`export_payout`), the user's merchants only."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        form = StatementForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            if not staff_can_access_merchant(request.user, data["merchant"]):
                raise PermissionDenied
            start = dt.datetime.combine(data["start"], dt.time.min, tzinfo=dt.UTC)
            end = dt.datetime.combine(data["end"] + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
            statement = merchant_statement(merchant_id=data["merchant"], start=start, end=end,
                                           currency=(data["currency"] or "").upper() or None)
            # a period that may still change (it ends after the oldest open posting transaction
            # began, e.g. today's) is named provisional
            name = (f"statement-{data['merchant']}-{data['start']:%Y%m%d}-{data['end']:%Y%m%d}"
                    f"{'' if statement.final else '-provisional'}.csv")  # fmt: skip
            return csv_response(merchant_statement_rows(statement), STATEMENT_COLUMNS, name)
        context = {**self.admin_site.each_context(request), "form": form, "opts": self.model._meta,
                   "title": "Merchant statement"}  # fmt: skip
        return TemplateResponse(request, "admin/reconciliation/merchant_statement.html", context)


from reconciliation import admin_approvals, admin_reports  # noqa: E402,F401 - registers the reconciliation (report) admins
