"""Discrepancy resolutions waiting for a second user (four eyes; reconciliation.services.approvals):
read-only rows with two actions, approve (the resolution then runs) and reject, each with a note,
on a page of its own."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.urls import reverse

from payera.backoffice.actions import reason_page
from payera.backoffice.four_eyes import FourEyesAdminMixin
from payera.backoffice.models import StaffActionOutcome
from payera.staff.admin import MerchantScopedAdminMixin
from reconciliation import services
from reconciliation.admin_reports import _all_merchants
from reconciliation.models import DiscrepancyApproval, DiscrepancyApprovalStatus
from reconciliation.services.approvals import ACTIONS, APPROVE_PERMISSION


@admin.register(DiscrepancyApproval)
class DiscrepancyApprovalAdmin(FourEyesAdminMixin, MerchantScopedAdminMixin, admin.ModelAdmin):
    list_display = ("id", "discrepancy", "action", "amount", "currency", "merchant", "status", "requested_by",
                    "requested_at", "decided_by")  # fmt: skip
    list_filter = ("status", "action")
    search_fields = ("=id", "=discrepancy__id")
    list_select_related = ("discrepancy", "merchant", "requested_by", "decided_by")
    ordering = ("-requested_at",)
    change_form_template = "admin/reconciliation/discrepancyapproval_change_form.html"
    fields = ("id", "discrepancy", "merchant", "action", "params", "amount", "currency", "status", "reason",
              "requested_by", "requested_at", "decided_by", "decided_at", "decision_note", "failure")  # fmt: skip
    readonly_fields = fields

    def merchant_access_allowed(self, request, obj) -> bool:
        if obj.merchant_id is None:  # a line Payera could not tie to a merchant: all-merchant staff only
            return _all_merchants(request)
        return super().merchant_access_allowed(request, obj)

    def may_decide(self, request, obj) -> bool:
        """Approve and reject take the approve permission and the action's own (the service's rule)."""
        perm = ACTIONS[obj.action][0]
        user = request.user
        return user.has_perm(f"reconciliation.{APPROVE_PERMISSION}") and user.has_perm(f"reconciliation.{perm}")

    def approve_view(self, request, object_id):
        approval = self.waiting(request, object_id, approving=True)

        def perform(obj, data):
            done = services.discrepancy_approval_approve(user=request.user, approval_id=obj.pk, note=data["reason"])
            if done.status == DiscrepancyApprovalStatus.DONE:
                return (
                    StaffActionOutcome.DONE,
                    f"approved; {done.get_action_display()} of discrepancy {done.discrepancy_id} done",
                )
            return StaffActionOutcome.REFUSED, f"approved, but it no longer fits, nothing moved: {done.failure}"

        return reason_page(self, request, approval, action="reconciliation.discrepancy_approve",
                           button="Approve and carry out",
                           title=f"Approve: {approval.get_action_display()} of discrepancy {approval.discrepancy_id},"
                                 f" {approval.amount} {approval.currency} (minor units), asked by "
                                 f"{approval.requested_by}: it moves the money at once",
                           perform=perform, done_url=self._done(approval))  # fmt: skip

    def reject_view(self, request, object_id):
        approval = self.waiting(request, object_id)

        def perform(obj, data):
            services.discrepancy_approval_reject(user=request.user, approval_id=obj.pk, note=data["reason"])
            return StaffActionOutcome.DONE, "rejected; nothing moved"

        return reason_page(
            self,
            request,
            approval,
            action="reconciliation.discrepancy_reject",
            button="Reject",
            title="Reject the resolution",
            perform=perform,
            done_url=self._done(approval),
        )

    def _done(self, approval) -> str:
        return reverse("admin:reconciliation_discrepancy_change", args=[quote(approval.discrepancy_id)])
