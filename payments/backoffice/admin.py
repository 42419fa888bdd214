"""Refunds waiting for a second finance user (four eyes): read-only rows with two actions,
approve (the refund then goes to the PSP) and reject, each with a note, on a page of its own."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.urls import reverse

from payera.backoffice.actions import reason_page
from payera.backoffice.four_eyes import FourEyesAdminMixin
from payera.backoffice.models import StaffActionOutcome
from payera.staff.admin import MerchantScopedAdminMixin
from payments.backoffice import services as staff
from payments.backoffice.models import AP, RefundApproval


@admin.register(RefundApproval)
class RefundApprovalAdmin(FourEyesAdminMixin, MerchantScopedAdminMixin, admin.ModelAdmin):
    list_display = ("id", "payment", "merchant", "amount", "currency", "status", "requested_by", "requested_at",
                    "decided_by")
    list_filter = ("status",)
    search_fields = ("=id", "=payment__id")
    list_select_related = ("merchant", "payment", "requested_by", "decided_by")
    show_full_result_count = False
    ordering = ("-requested_at",)
    change_form_template = "payments_backoffice/refundapproval_change_form.html"
    fields = ("id", "payment", "booking", "merchant", "amount", "currency", "status", "reason", "requested_by",
              "requested_at", "decided_by", "decided_at", "decision_note", "refund", "failure")
    readonly_fields = fields

    def has_approve_permission(self, request, obj=None) -> bool:
        """May approve (and reject) approvals; with `obj`, may approve that one: approving a booking
        cancel refunds the booking's escrow, which also takes `payments.refund_booking` (the
        service's own rule, `refund_approval_approve`). Global permissions, as the roles give them:
        an object grant does not make an approver."""
        user = request.user
        if not (user.has_perm(staff.APPROVE_PERMISSION) and user.has_perm(staff.REFUND_PERMISSION)):
            return False
        return obj is None or not obj.booking_id or user.has_perm(staff.BOOKING_REFUND_PERMISSION)

    def may_decide(self, request, obj) -> bool:
        return self.has_approve_permission(request)

    def may_approve(self, request, obj) -> bool:
        return self.has_approve_permission(request, obj)

    def approve_view(self, request, object_id):
        approval = self.waiting(request, object_id, approving=True)

        def perform(obj, data):
            done = staff.refund_approval_approve(user=request.user, approval_id=obj.pk, note=data["reason"])
            if done.status == AP.SENT:
                return StaffActionOutcome.DONE, f"approved; refund {done.refund_id} {done.refund.status}"
            return StaffActionOutcome.REFUSED, f"approved, but the refund was refused: {done.failure}"

        what = (f"the cancel of booking {approval.booking_id}, refunding its escrow of" if approval.booking_id
                else "the refund of")
        return reason_page(self, request, approval, action="payments.refund_approve", button="Approve and send",
                           title=f"Approve {what} {approval.amount} {approval.currency} (minor units) asked by "
                                 f"{approval.requested_by}: it is sent to the PSP at once",
                           perform=perform, done_url=self._done(approval))

    def reject_view(self, request, object_id):
        approval = self.waiting(request, object_id)

        def perform(obj, data):
            staff.refund_approval_reject(user=request.user, approval_id=obj.pk, note=data["reason"])
            return StaffActionOutcome.DONE, "rejected; nothing was sent"

        return reason_page(self, request, approval, action="payments.refund_reject", button="Reject",
                           title="Reject the refund", perform=perform, done_url=self._done(approval))

    def _done(self, approval) -> str:
        return reverse("admin:payments_payment_change", args=[quote(approval.payment_id)])
