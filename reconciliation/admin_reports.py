"""Back office for PSP reconciliation (finance): the run page (counts and sums per outcome, match
rate, unexplained amount, receivable check and aging, as inline CSS bars), report upload, CSV
exports, and the discrepancy transitions (each with a reason, behind its permission).

Runs and their lines span every merchant of a PSP, so they are shown only to staff who see every
merchant (`staff.access_all_merchants`, superusers); discrepancies are merchant-scoped."""

from __future__ import annotations

import csv
import hashlib
import io
import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from payera.backoffice.actions import ReasonForm, reason_action
from payera.backoffice.models import StaffActionOutcome
from payera.backoffice.services import staff_action_record
from payera.core.errors import PayeraError
from payera.core.money import minor_to_decimal_string
from payera.staff.access import staff_merchant_ids
from payera.staff.admin import MerchantScopedAdminMixin
from reconciliation.admin_csv import RUN_TABLE_EXPORTS
from reconciliation.exports import csv_safe
from reconciliation.models import (
    Discrepancy,
    DiscrepancyApproval,
    DiscrepancyStatus,
    ReconciliationRun,
    ReconOutcome,
    ReconRunStatus,
    StatementLine,
)
from reconciliation.selectors import receivable_aging, receivable_check

LINE_CSV_COLUMNS = ("run_id", "line_number", "psp", "kind", "reference", "psp_reference", "operation_reference",
                    "operation_psp_reference", "currency", "gross", "fee", "net", "expected_fee", "expected_gross",
                    "settled_on", "payout_batch_id", "outcome", "healed", "object_id", "merchant_id",
                    "journal_reference")  # fmt: skip
DISCREPANCY_CSV_COLUMNS = ("id", "run_id", "kind", "status", "psp", "merchant_id", "reference", "object_id",
                           "currency", "psp_amount", "payera_amount", "difference", "reason", "assigned_to",
                           "resolved_by", "adjustment_reference", "receivable_cleared", "cleared_currency",
                           "cleared_account", "receivable_recovered",
                           "created_at", "closed_at")  # fmt: skip


def _cell(value):
    """A JSON column (the per-currency payout minimums) as JSON, keys sorted: never Python's repr."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def csv_response(rows, columns: tuple[str, ...], filename: str) -> HttpResponse:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_safe(_cell(row[c])) for c in columns])  # numbers (-111.09) stay numbers
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def waiting_detail(approval) -> str:
    """What staff read when their resolution waits for a second user (four eyes)."""
    return (f"moves {approval.amount} {approval.currency} (minor units), above the approval threshold: waiting for a"
            f" second user's approval (discrepancy approval {approval.pk}); nothing moved yet")  # fmt: skip


def _all_merchants(request) -> bool:
    return staff_merchant_ids(request.user) is None


def _bar(value: int, top: int, color: str) -> str:
    pct = 0 if top <= 0 else max(1 if value else 0, round(100 * abs(value) / top))
    return format_html(
        '<div style="background:#eee;width:240px;height:12px;display:inline-block">'
        '<div style="background:{};width:{}%;height:12px"></div></div>', color, pct
    )


def run_report_html(run: ReconciliationRun) -> str:
    """The run page's report: progress, outcomes (count, sum, bar), match rate, unexplained
    amount, the receivable check and aging buckets."""
    s = run.summary or {}
    parts = []
    if run.status != ReconRunStatus.DONE:
        parts.append(format_html(
            '<p>{} — {}</p>{}', run.get_status_display(), run.progress_phase,
            mark_safe(_bar(run.progress_percent, 100, "#417690")),  # noqa: S308 - built above
        ))  # fmt: skip
        return mark_safe("".join(parts))  # noqa: S308 - every part is format_html-escaped
    rows = s.get("rows", 0)
    counts = {ReconOutcome.MATCHED.value: s.get("matched", 0), **s.get("discrepancies", {})}
    top = max(counts.values() or [0])
    sums = _sums_by_currency(run)
    unexplained = _unexplained_by_currency(run)
    rate = 100.0 * s.get("matched", 0) / rows if rows else 100.0
    parts.append(format_html(
        "<p><b>Match rate {}%</b> ({} of {} rows) · unexplained {} · healed by inquiry {} · "
        "unreadable lines {} · settlement journals {} · sent again (an earlier report had them) {}</p>",
        f"{rate:.1f}", s.get("matched", 0), rows, _amounts(unexplained), s.get("healed", 0),
        run.row_error_count, s.get("journals", 0), s.get("sent_again", 0),
    ))  # fmt: skip
    body = format_html_join(
        "", "<tr><td>{}</td><td style='text-align:right'>{}</td><td style='text-align:right'>{}</td><td>{}</td></tr>",
        ((ReconOutcome(o).label, n, _amounts(sums.get(o, {})),
          mark_safe(_bar(n, top, "#5b9b5b" if o == ReconOutcome.MATCHED else "#c0504d")))  # noqa: S308
         for o, n in counts.items()),
    )  # fmt: skip
    parts.append(format_html(
        "<table><thead><tr><th>Outcome</th><th>Count</th><th>Gross (per currency)</th><th></th></tr></thead>"
        "<tbody>{}</tbody></table>", body,
    ))  # fmt: skip
    checks = receivable_check(psp=run.psp)
    parts.append(format_html(
        "<h3>PSP receivable {} (ledger vs captured and not yet settled)</h3><table><tbody>{}</tbody></table>",
        run.psp,
        format_html_join("", "<tr><td>{}</td><td>ledger {}</td><td>unsettled {}</td><td>{}</td></tr>", (
            (c["currency"], _money(c["ledger"], c["currency"]), _money(c["unsettled"], c["currency"]),
             "ties out" if c["ok"] else "DOES NOT TIE OUT") for c in checks)),
    ))  # fmt: skip
    aging = receivable_aging(psp=run.psp)
    atop = max([abs(a["amount"]) for a in aging] or [0])
    parts.append(format_html(
        "<h3>Receivable aging</h3><table><tbody>{}</tbody></table>",
        format_html_join("", "<tr><td>{}</td><td>{}</td><td style='text-align:right'>{}</td><td>{} items</td>"
                         "<td>{}</td></tr>", (
            (a["bucket"], a["currency"], _money(a["amount"], a["currency"]), a["count"],
             mark_safe(_bar(a["amount"], atop, "#417690"))) for a in aging)),  # noqa: S308
    ))  # fmt: skip
    if run.row_errors:
        parts.append(format_html(
            "<h3>Unreadable lines</h3><ul>{}</ul>",
            format_html_join("", "<li>line {}: {}</li>",
                             ((e["line"], e["message"][:200]) for e in run.row_errors[:50])),
        ))  # fmt: skip
    return mark_safe("".join(parts))  # noqa: S308 - every part is format_html-escaped


def _sums_by_currency(run: ReconciliationRun) -> dict[str, dict[str, int]]:
    """Gross per outcome and currency: the run's lines (one GROUP BY over the run's lines) and its
    "missing at PSP" discrepancies (Payera's amounts: no line). Never added across currencies."""
    from django.db.models import Sum

    out: dict[str, dict[str, int]] = {}
    lines = run.lines.order_by().values_list("outcome", "currency").annotate(gross=Sum("gross"))
    missing = (run.discrepancies.filter(kind=ReconOutcome.MISSING_AT_PSP).order_by()
               .values_list("kind", "currency").annotate(gross=Sum("payera_amount")))  # fmt: skip
    for outcome, currency, gross in [*lines, *missing]:
        out.setdefault(outcome, {})[currency] = int(gross or 0)
    # lines of a report sent again are stored as duplicates and counted as the earlier line was
    for outcome, per in ((run.summary or {}).get("sent_again_gross") or {}).items():
        for currency, gross in per.items():
            dup = out.setdefault(ReconOutcome.DUPLICATE.value, {})
            dup[currency] = dup.get(currency, 0) - gross
            if not dup[currency]:
                del dup[currency]
            into = out.setdefault(outcome, {})
            into[currency] = into.get(currency, 0) + gross
    return out


def _unexplained_by_currency(run: ReconciliationRun) -> dict[str, int]:
    """What open and investigating discrepancies leave unexplained (|difference|), per currency."""
    out: dict[str, int] = {}
    open_ = run.discrepancies.filter(status__in=[DiscrepancyStatus.OPEN, DiscrepancyStatus.INVESTIGATING])
    for currency, difference in open_.values_list("currency", "difference"):
        out[currency] = out.get(currency, 0) + abs(difference)
    return out


def _amounts(by_currency: dict[str, int]) -> str:
    """`10.00 EUR, 500 JPY`: each currency apart, in its own units; `0` when there is nothing."""
    shown = [f"{_money(v, c)} {c}" for c, v in sorted(by_currency.items()) if v]
    return ", ".join(shown) or "0"


def _money(amount: int, currency: str) -> str:
    try:
        return minor_to_decimal_string(int(amount), currency)
    except Exception:  # noqa: BLE001 - an odd currency still shows its minor units
        return str(amount)


class UploadForm(forms.Form):
    psp = forms.ChoiceField(choices=())
    report = forms.FileField(help_text="The PSP's settlement report, in its own format.")

    def __init__(self, *args, **kwargs):
        from psp_adapters.registry import connector_names

        super().__init__(*args, **kwargs)
        self.fields["psp"].choices = [(n, n) for n in connector_names()]


class ReadOnlyAllMerchantsAdmin(admin.ModelAdmin):
    """PSP-wide data: only for staff who see every merchant; never added, changed or deleted."""

    def has_view_permission(self, request, obj=None) -> bool:
        return super().has_view_permission(request, obj) and _all_merchants(request)

    def has_module_permission(self, request) -> bool:
        return super().has_module_permission(request)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def _perm(self, request, codename: str) -> bool:
        return request.user.has_perm(f"reconciliation.{codename}") and _all_merchants(request)

    def has_export_permission(self, request) -> bool:
        return self._perm(request, "export_reconciliationrun")


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAllMerchantsAdmin):
    list_display = ("id", "psp", "period_start", "status", "progress", "rows", "matched", "match_rate",
                    "discrepancy_count", "row_error_count", "source", "created_at")  # fmt: skip
    list_filter = ("psp", "status", "source")
    search_fields = ("id", "file_name", "file_sha256")
    fields = ("id", "psp", "file_name", "file_sha256", "source", "created_by", "period_start", "period_end", "status",
              "rows_total", "rows_loaded", "row_error_count", "created_at", "finished_at", "report")  # fmt: skip
    readonly_fields = fields
    actions = ["export_lines", "export_discrepancies", *RUN_TABLE_EXPORTS]
    change_list_template = "admin/reconciliation/reconciliationrun/change_list.html"

    @admin.display(description="progress")
    def progress(self, obj) -> str:
        loading = obj.status in (ReconRunStatus.LOADING, ReconRunStatus.DONE)
        return f"{obj.progress_percent}%" if loading else obj.get_status_display()

    @admin.display(description="rows")
    def rows(self, obj) -> int:
        return (obj.summary or {}).get("rows", obj.rows_loaded)

    @admin.display(description="matched")
    def matched(self, obj) -> int:
        return (obj.summary or {}).get("matched", 0)

    @admin.display(description="match rate")
    def match_rate(self, obj) -> str:
        s = obj.summary or {}
        return f"{100.0 * s.get('matched', 0) / s['rows']:.1f}%" if s.get("rows") else "-"

    @admin.display(description="discrepancies")
    def discrepancy_count(self, obj) -> int:
        return sum((obj.summary or {}).get("discrepancies", {}).values())

    @admin.display(description="report")
    def report(self, obj) -> str:
        return run_report_html(obj)

    def get_urls(self):
        urls = super().get_urls()
        view = self.admin_site.admin_view(self.upload_view)
        return [path("upload/", view, name="reconciliation_reconciliationrun_upload"), *urls]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_upload": self._perm(request, "import_reconciliationrun")}
        return super().changelist_view(request, extra_context=extra_context)

    def upload_view(self, request):
        if not self._perm(request, "import_reconciliationrun"):
            raise PermissionDenied
        from reconciliation.services import reconcile_import
        from reconciliation.services.reconcile import RunTakenOverError

        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["report"]
            raw = upload.read()
            try:
                result = reconcile_import(psp=form.cleaned_data["psp"], raw=raw, file_name=upload.name,
                                          source="upload", actor=request.user.get_username())
            except PayeraError as exc:
                form.add_error("report", exc.message)
            except RunTakenOverError:  # not a failure of the file: another import owns it now
                self._taken_over_message(request, psp=form.cleaned_data["psp"], raw=raw)
            else:
                body = result.as_contract()
                note = "" if result.created else " (this file was imported before: nothing changed)"
                self.message_user(request, f"{body['rows']} rows, {body['matched']} matched, "
                                           f"{sum(body['discrepancies'].values())} discrepancies{note}.",
                                  level=messages.SUCCESS)  # fmt: skip
                return HttpResponseRedirect(
                    reverse("admin:reconciliation_reconciliationrun_change", args=[quote(result.run_id)])
                )
        context = {**self.admin_site.each_context(request), "form": form, "opts": self.model._meta,
                   "title": "Import a PSP settlement report"}  # fmt: skip
        return TemplateResponse(request, "admin/reconciliation/upload.html", context)

    def _taken_over_message(self, request, *, psp: str, raw: bytes) -> None:
        """This upload's import stalled past RECONCILIATION_RUN_BUSY_MINUTES and another import of
        the same file took its run over: this one stopped before its finish (nothing of it is
        kept: the run, its lines and journals are the other import's). Where to look, what to do."""
        run = ReconciliationRun.objects.filter(psp=psp, file_sha256=hashlib.sha256(raw).hexdigest()).first()
        where = format_html(
            '<a href="{}">{}</a>',
            reverse("admin:reconciliation_reconciliationrun_change", args=[quote(run.pk)]), run.pk,
        ) if run is not None else "its run"  # fmt: skip
        self.message_user(request, format_html(
            "This upload was stopped: its import made no progress for a while and was taken over by another import "
            "of the same file, which imports the day now ({}). Nothing of this upload was kept. Look at that run: "
            "once it is done there is nothing to do; if it failed, or this page says it is busy, upload the file "
            "again later.", where,
        ), level=messages.ERROR)  # fmt: skip

    @admin.action(description="Export the lines of the selected runs (CSV)", permissions=["export"])
    def export_lines(self, request, queryset):
        lines = StatementLine.objects.filter(run__in=queryset).order_by("run_id", "line_number").values(
            *LINE_CSV_COLUMNS)
        name = f"reconciliation-lines-{timezone.now():%Y%m%d%H%M%S}.csv"
        return csv_response(lines.iterator(), LINE_CSV_COLUMNS, name)

    @admin.action(description="Export the discrepancies of the selected runs (CSV)", permissions=["export"])
    def export_discrepancies(self, request, queryset):
        rows = Discrepancy.objects.filter(run__in=queryset).order_by("id").values(*DISCREPANCY_CSV_COLUMNS)
        return csv_response(rows.iterator(), DISCREPANCY_CSV_COLUMNS, "discrepancies.csv")


@admin.register(StatementLine)
class StatementLineAdmin(ReadOnlyAllMerchantsAdmin):
    list_display = ("run_id", "line_number", "kind", "reference", "currency", "gross", "fee", "net", "outcome",
                    "healed", "settled_on", "payout_batch_id")  # fmt: skip
    list_filter = ("outcome", "kind", "psp", "healed", "currency")
    search_fields = ("reference", "psp_reference", "operation_reference", "object_id", "run__id")
    fields = LINE_CSV_COLUMNS
    readonly_fields = fields
    actions = ["export_csv"]

    @admin.action(description="Export the selected lines (CSV)", permissions=["export"])
    def export_csv(self, request, queryset):
        return csv_response(queryset.order_by("run_id", "line_number").values(*LINE_CSV_COLUMNS).iterator(),
                            LINE_CSV_COLUMNS, "reconciliation-lines.csv")


class DiscrepancyActionForm(ReasonForm):
    """The back office's reason (payera.backoffice.actions.ReasonForm: 5+ characters, as the
    services require), and a resolution's optional adjustment."""

    adjustment = forms.IntegerField(
        required=False, initial=0,
        help_text="Resolve only, one discrepancy at a time: minor units of its capture, refund or dispute taken off "
                  "the PSP receivable as PSP cost (in its direction, at most what is left of it); 0 posts nothing.",
    )  # fmt: skip
    currency = forms.CharField(required=False, max_length=3, help_text="The adjustment's currency (ISO code).")


class SuspenseForm(ReasonForm):
    """The back office's reason (what explains the money, audited) and where the money goes."""

    to = forms.ChoiceField(choices=[
        ("receivable", "the PSP receivable of a capture or refund of ours"),
        ("merchant", "a merchant's pending balance"),
        ("psp_refund_due", "owed back to the PSP (paid by mistake)"),
    ])  # fmt: skip
    object_id = forms.CharField(required=False, max_length=40, help_text="To the receivable: the capture or refund id.")
    merchant_id = forms.CharField(required=False, max_length=40, help_text="To a merchant: the merchant id.")
    amount = forms.IntegerField(required=False, help_text="Minor units, signed as the line's gross; empty: all left.")
    currency = forms.CharField(max_length=3, help_text="The suspense's currency (ISO code), as a check.")
    move = forms.IntegerField(widget=forms.HiddenInput, min_value=1)


@admin.register(Discrepancy)
class DiscrepancyAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    merchant_field = "merchant_id"
    list_display = ("id", "kind", "status", "psp", "merchant_id", "reference", "currency", "psp_amount",
                    "payera_amount", "difference", "run_id", "created_at")  # fmt: skip
    list_filter = ("status", "kind", "psp", "currency")
    search_fields = ("reference", "object_id", "run__id")
    fields = ("id", "run", "line", "kind", "status", "psp", "merchant", "reference", "object_id", "currency",
              "psp_amount", "payera_amount", "difference", "reason", "assigned_to", "resolved_by",
              "adjustment_reference", "receivable_cleared", "cleared_currency", "cleared_account",
              "receivable_recovered", "suspense_moves", "created_at", "updated_at", "closed_at")  # fmt: skip
    readonly_fields = fields
    actions = ["investigate", "resolve", "settle_as_reported", "write_off", "reallocate_suspense", "recheck",
               "export_csv"]  # fmt: skip

    def merchant_access_allowed(self, request, obj) -> bool:
        if obj.merchant_id is None:  # a PSP row Payera can not tie to a merchant: all-merchant staff only
            return _all_merchants(request)
        return super().merchant_access_allowed(request, obj)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_investigate_permission(self, request) -> bool:
        return request.user.has_perm("reconciliation.investigate_discrepancy")

    def has_resolve_permission(self, request) -> bool:
        return request.user.has_perm("reconciliation.resolve_discrepancy")

    def has_write_off_permission(self, request) -> bool:
        return request.user.has_perm("reconciliation.write_off_discrepancy")

    def has_export_permission(self, request) -> bool:
        return request.user.has_perm("reconciliation.export_reconciliationrun")

    def has_recheck_permission(self, request) -> bool:
        return request.user.has_perm("reconciliation.resolve_discrepancy")

    def has_reallocate_permission(self, request) -> bool:
        return request.user.has_perm("reconciliation.reallocate_suspense_discrepancy")

    @admin.action(description="Move money out of suspense (once explained; one discrepancy)",
                  permissions=["reallocate"])  # fmt: skip
    def reallocate_suspense(self, request, queryset):
        """Where the money a line settled as reported put into suspense belongs (services.suspense):
        one discrepancy at a time; the form carries the move's number, so a second submit of the
        same page moves nothing again."""
        from reconciliation import services
        from reconciliation.services.suspense import in_suspense

        if len(queryset) != 1:
            self.message_user(request, f"Money is moved out of suspense for exactly one discrepancy ({len(queryset)}"
                                       " selected): nothing was done.", level=messages.ERROR)  # fmt: skip
            return None
        d = queryset[0]  # merchant-scoped: other merchants' ids were dropped
        self.merchant_access_check(request, d)
        currency, left = in_suspense(d)
        form = SuspenseForm(request.POST if "apply" in request.POST else None,
                            initial={"move": len(d.suspense_moves or []) + 1, "currency": currency})  # fmt: skip
        if "apply" in request.POST and form.is_valid():
            data = form.cleaned_data
            made = len(d.suspense_moves or [])
            try:
                after = services.discrepancy_request(
                    action="reallocate_suspense", discrepancy_id=d.pk, user=request.user, reason=data["reason"],
                    to=data["to"], amount=data["amount"], currency=data["currency"], object_id=data["object_id"],
                    merchant_id=data["merchant_id"], move=data["move"],
                )  # fmt: skip
            except PayeraError as exc:
                self.message_user(request, f"{d.pk}: {exc.message}", level=messages.ERROR)
                self._log(request, d, "reallocate_suspense", data["reason"], StaffActionOutcome.REFUSED, exc.message)
                return None
            if isinstance(after, DiscrepancyApproval):
                detail = waiting_detail(after)
                self.message_user(request, f"{d.pk}: {detail}.", level=messages.WARNING)
                self._log(request, d, "reallocate_suspense", data["reason"], StaffActionOutcome.DONE, detail)
                return None
            if len(getattr(after, "suspense_moves", None) or []) > made:
                detail = f"moved out of suspense to {data['to']} (move {data['move']})"
            else:  # the same page sent again: the service answers the move already made
                detail = f"move {data['move']} was made already: nothing moved again"
            self.message_user(request, f"{d.pk}: {detail}.", level=messages.SUCCESS)
            self._log(request, d, "reallocate_suspense", data["reason"], StaffActionOutcome.DONE, detail)
            return None
        context = {**self.admin_site.each_context(request), "form": form, "opts": self.model._meta, "d": d,
                   "left": left, "currency": currency, "action": request.POST.get("action"),
                   "title": "Move money out of suspense",
                   "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}  # fmt: skip
        return TemplateResponse(request, "admin/reconciliation/discrepancy_suspense.html", context)

    def _log(self, request, d, verb: str, reason: str, outcome: str, detail: str) -> None:
        """The staff action of one discrepancy (who, why, how it ended): the back office's log of
        what staff did, beside the discrepancy's own audit trail."""
        staff_action_record(
            user=request.user, action=f"reconciliation.discrepancy_{verb}", object_type=d._meta.label_lower,
            object_id=str(d.pk), merchant_id=d.merchant_id or "", reason=reason, outcome=outcome, detail=detail,
        )  # fmt: skip

    def _transition(self, request, queryset, verb: str, title: str):
        """A reason form first (Django's intermediate action page); then the service per row."""
        from reconciliation import services

        form = DiscrepancyActionForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            adjustment = (form.cleaned_data["adjustment"] or 0) if verb == "resolve" else 0
            currency = form.cleaned_data["currency"].strip().upper()
            # an amount is one discrepancy's: never the same amount posted once per selected row
            if adjustment and len(queryset) != 1:
                self.message_user(request, f"An adjustment applies to exactly one discrepancy ({len(queryset)} "
                                           "selected): nothing was done.", level=messages.ERROR)  # fmt: skip
                return None
            if adjustment and not currency:
                self.message_user(request, "An adjustment needs its currency: nothing was done.", level=messages.ERROR)
                return None
            done, waiting = 0, []
            for d in queryset:  # merchant-scoped: other merchants' ids were dropped
                self.merchant_access_check(request, d)
                kwargs = {"discrepancy_id": d.pk, "user": request.user, "reason": form.cleaned_data["reason"]}
                if adjustment:
                    kwargs.update(adjustment=adjustment, currency=currency)
                try:
                    if verb == "investigate":
                        after = services.discrepancy_investigate(**kwargs)
                    else:  # money: above the threshold it waits for a second user
                        after = services.discrepancy_request(action=verb, **kwargs)
                except PayeraError as exc:
                    self.message_user(request, f"{d.pk}: {exc.message}", level=messages.WARNING)
                    self._log(request, d, verb, form.cleaned_data["reason"], StaffActionOutcome.REFUSED, exc.message)
                else:
                    if isinstance(after, DiscrepancyApproval):
                        detail = waiting_detail(after)
                        self.message_user(request, f"{d.pk}: {detail}.", level=messages.WARNING)
                        self._log(request, d, verb, form.cleaned_data["reason"], StaffActionOutcome.DONE, detail)
                        waiting.append(after.pk)
                        continue
                    done += 1
                    status = getattr(after, "status", "")
                    detail = f"discrepancy {status}" + (f", adjustment {adjustment} {currency}" if adjustment else "")
                    self._log(request, d, verb, form.cleaned_data["reason"], StaffActionOutcome.DONE, detail)
            if done:
                self.message_user(request, f"{done} discrepancy(ies): {title.lower()}.", level=messages.SUCCESS)
            if len(waiting) > 1:  # one submit asked for several: one line naming them all, for the approver
                self.message_user(request, f"{len(waiting)} discrepancies wait for a second user's approval"
                                           f" (discrepancy approvals {', '.join(map(str, waiting))}): nothing of"
                                           " theirs moved yet.", level=messages.WARNING)  # fmt: skip
            return None
        context = {**self.admin_site.each_context(request), "form": form, "opts": self.model._meta,
                   "queryset": queryset, "action": request.POST.get("action"), "title": title,
                   "show_adjustment": verb == "resolve",
                   "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}  # fmt: skip
        return TemplateResponse(request, "admin/reconciliation/discrepancy_action.html", context)

    @admin.action(description="Start investigating (with a reason)", permissions=["investigate"])
    def investigate(self, request, queryset):
        return self._transition(request, queryset, "investigate", "Start investigating")

    @admin.action(description="Resolve (reason, optional adjustment of one discrepancy)", permissions=["resolve"])
    def resolve(self, request, queryset):
        return self._transition(request, queryset, "resolve", "Resolve")

    @admin.action(description="Resolve: settle as the PSP reported (books the money of the line)",
                  permissions=["resolve"])
    def settle_as_reported(self, request, queryset):
        return self._transition(request, queryset, "settle_as_reported", "Settle as reported")

    @admin.action(description="Write off (reason; what is still receivable becomes a loss)", permissions=["write_off"])
    def write_off(self, request, queryset):
        return self._transition(request, queryset, "write_off", "Write off")

    @admin.action(description="Re-check with the PSP (missing in Payera: the late heal; asks why)",
                  permissions=["recheck"])  # fmt: skip
    def recheck(self, request, queryset):
        """The late heal of the selected "missing in Payera" discrepancies now (the others are
        refused, left as they are): the PSP is asked again, a line that now matches is settled (a
        settlement journal) and its discrepancy resolved (docs/reconciliation.md, "Late heal").
        It moves money, so it asks why first (the back office's action page) and each selected
        discrepancy of the user's merchants is a `StaffAction` with its outcome."""
        from reconciliation import services

        def perform(d, data):
            self.merchant_access_check(request, d)  # the queryset is scoped already: belt and braces
            result = services.discrepancy_recheck(discrepancy_ids=[d.pk], user=request.user)
            if not result.lines:
                return (StaffActionOutcome.REFUSED,
                        "not a waiting \"missing in Payera\" discrepancy of a finished run: nothing asked")
            if result.healed:
                d.refresh_from_db(fields=["status"])
                return StaffActionOutcome.DONE, f"healed ({result.asked} inquiry(ies)): settled, discrepancy {d.status}"
            if result.reclassified:
                return StaffActionOutcome.DONE, (f"asked again ({result.asked} inquiry(ies)): the line is of another "
                                                 "kind now, a discrepancy of that kind opened")
            return StaffActionOutcome.DONE, f"asked again ({result.asked} inquiry(ies)): still open"

        return reason_action(self, request, queryset, action="reconciliation.discrepancy_recheck",
                             title="Re-check with the PSP", button="Re-check", perform=perform)

    @admin.action(description="Export the selected discrepancies (CSV)", permissions=["export"])
    def export_csv(self, request, queryset):
        return csv_response(queryset.order_by("id").values(*DISCREPANCY_CSV_COLUMNS).iterator(),
                            DISCREPANCY_CSV_COLUMNS, "discrepancies.csv")
