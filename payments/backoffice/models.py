"""Four eyes on large staff refunds (docs/backoffice.md), and on back-office cancels of confirmed
bookings that would refund more than the threshold out of escrow (`booking`).

pending --approve--> approved --mark_sent--> sent      (the refund went to the PSP: see `refund`)
                              --mark_failed-> failed   (refused: by the payments service, or its refund
                                                        failed at once)
                     sent --mark_refund_failed-> failed (a refund the PSP refused later: plain, or a
                                                        booking cancel's out of escrow)
                     failed --mark_refund_found-> sent  (its refund, failed as not known at the PSP,
                                                        made by the PSP after all)
pending --reject---> rejected
The status moves only through these transitions (protected FSM field); the services lock the
row, check `can_proceed`, transition and save. The database refuses a decision on an approved
(approved, sent, failed) row by the user who asked for it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from payera.core.ids import IdField


class ApprovalStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"  # decided; being sent to the PSP
    SENT = "sent"
    FAILED = "failed"
    REJECTED = "rejected"


AP = ApprovalStatus


class RefundApproval(ConcurrentTransitionMixin, models.Model):
    id = IdField(prefix="rap")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    payment = models.ForeignKey("payments.Payment", on_delete=models.PROTECT, related_name="refund_approvals")
    # set: the refund is a booking's cancel (its whole escrow); approving cancels the booking
    booking = models.ForeignKey("payments.Booking", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.TextField()
    status = FSMField(choices=AP.choices, default=AP.PENDING, protected=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now, editable=False)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True, default="")
    refund = models.ForeignKey("payments.Refund", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    failure = models.CharField(max_length=255, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        default_permissions = ("view",)
        permissions = [("approve_refundapproval", "Can approve or reject a refund waiting for approval")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_approval_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=AP.values), name="refund_approval_status_valid"),
            # four eyes, whoever writes: an approved refund was approved by someone else
            models.CheckConstraint(
                condition=Q(status__in=[AP.PENDING, AP.REJECTED])
                | (Q(decided_by__isnull=False) & ~Q(decided_by=F("requested_by"))),
                name="refund_approval_four_eyes",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-requested_at"], name="refund_approval_status_idx"),
            models.Index(fields=["merchant", "-requested_at"], name="refund_approval_merchant_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.amount} {self.currency}, {self.status})"

    @transition(field=status, source=[AP.PENDING], target=AP.APPROVED)
    def approve(self, *, by, note: str, at) -> None:
        self.decided_by = by
        self.decision_note = note
        self.decided_at = at

    @transition(field=status, source=[AP.PENDING], target=AP.REJECTED)
    def reject(self, *, by, note: str, at) -> None:
        self.decided_by = by
        self.decision_note = note
        self.decided_at = at

    @transition(field=status, source=[AP.APPROVED], target=AP.SENT)
    def mark_sent(self, *, refund_id: str) -> None:
        self.refund_id = refund_id

    @transition(field=status, source=[AP.APPROVED], target=AP.FAILED)
    def mark_failed(self, *, failure: str) -> None:
        self.failure = failure[:255]

    @transition(field=status, source=[AP.SENT], target=AP.FAILED)
    def mark_refund_failed(self, *, failure: str) -> None:
        self.failure = failure[:255]

    @transition(field=status, source=[AP.FAILED], target=AP.SENT)
    def mark_refund_found(self) -> None:
        """Its refund, failed as not known at the PSP, was made by the PSP after all (`mark_found`)."""
        self.failure = ""
