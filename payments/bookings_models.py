"""Bookings (escrow): a hold on the shopper's card that the merchant confirms (captured into its
escrow account in the ledger), then completes (escrow released to its pending balance) or cancels.

pending -> held (authorized) -> confirmed (captured into escrow) -> completed (released)
pending | held | confirmed -> canceled (void before capture, refund after)
pending | held -> expired (not confirmed by `hold_expires_at`: voided by the scheduler)
pending -> failed (declined)
confirmed -> canceled by a dispute (the shopper disputed the capture: the chargeback ends the
             escrow, whose share is released to pending, where the chargeback is taken as for any
             payment; `dispute` names it)

Imported at the end of payments/models.py, so it is part of the payments app. The booking follows
its manual-capture payment: the services move the payment at the PSP, and
`payments.services.booking_sync` moves the booking in the same transaction as the payment's
transition (see docs/payments-state-machines.md).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from payera.core.horizon import CommitStampField
from payera.core.ids import IdField
from payera.merchants.scoping import MerchantScopedQuerySet
from payments.postings import refund_fee_share


class BookingStatus(models.TextChoices):
    PENDING = "pending"  # authorization under way (3-D Secure, asynchronous PSP)
    HELD = "held"  # authorized, not captured
    CONFIRMED = "confirmed"  # captured into the merchant's escrow account
    COMPLETED = "completed"  # escrow released to the merchant's pending balance (the rest refunded)
    CANCELED = "canceled"  # voided before capture, refunded after, or ended by a dispute
    EXPIRED = "expired"  # not confirmed by hold_expires_at: voided by the scheduler
    FAILED = "failed"  # the authorization was declined


BS = BookingStatus


class Booking(ConcurrentTransitionMixin, models.Model):
    id = IdField(prefix="bk")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    payment = models.OneToOneField("payments.Payment", on_delete=models.PROTECT, related_name="booking")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reference = models.CharField(max_length=255)  # the merchant's own booking reference
    status = FSMField(choices=BS.choices, default=BS.PENDING, protected=True)
    hold_expires_at = models.DateTimeField()
    # money, in minor units: captured gross and its fee, what went to pending, what was refunded
    amount_captured = models.BigIntegerField(default=0)
    fee = models.BigIntegerField(default=0)
    amount_released = models.BigIntegerField(default=0)  # net of fee, credited to merchant pending
    amount_refunded = models.BigIntegerField(default=0)  # gross, refunded to the shopper from escrow
    refund = models.ForeignKey(
        "payments.Refund", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )  # the one refund out of escrow (cancel after confirm, the rest of a partial completion)
    metadata = models.JSONField(default=dict, blank=True)
    # the booking's one mutation in flight (confirm, complete, cancel, expire), claimed under its lock
    inflight = models.CharField(max_length=16, blank=True, default="")
    inflight_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)  # completed, canceled, expired or failed
    # the dispute (chargeback) that ended the escrow of a confirmed booking (then `canceled`)
    dispute = models.ForeignKey("payments.Dispute", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = CommitStampField()  # stamped in its INSERT: the polled list's order (payera.core.horizon)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MerchantScopedQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["merchant", "-created_at", "-id"], name="booking_merchant_created_idx"),
            models.Index(fields=["status", "hold_expires_at"], name="booking_status_expiry_idx"),
            models.Index(fields=["merchant", "reference"], name="booking_merchant_ref_idx"),
        ]
        # back-office actions (payera/staff/roles.py grants them by glob): voiding a hold is
        # operations' (payments.cancel_*); canceling a confirmed booking refunds it: finance's
        # (payments.refund_*)
        permissions = [
            ("cancel_booking", "Can cancel (void) or expire a booking"),
            ("refund_booking", "Can cancel a confirmed booking (refund its escrow)"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="booking_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=BS.values), name="booking_status_valid"),
            models.CheckConstraint(
                condition=Q(amount_captured__gte=0, fee__gte=0, amount_released__gte=0, amount_refunded__gte=0),
                name="booking_amounts_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(amount_captured__lte=models.F("amount")), name="booking_captured_le_amount"
            ),
            models.CheckConstraint(
                condition=Q(amount_refunded__lte=models.F("amount_captured")), name="booking_refunded_le_captured"
            ),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def amount_escrowed(self) -> int:
        """What this booking holds in the merchant's escrow account: while confirmed, the capture
        less its fee (completion releases part of it and a refund takes the rest), less what a
        refund out of escrow already took (a cancel or partial completion that died after its
        refund, before recording the booking: the refund less its fee share); once closed,
        what its refund out of escrow will take when it is still pending at the PSP (the refund
        less its fee share; released to pending instead if the refund fails)."""
        from payments.models import OperationStatus, Refund  # this module is imported by payments.models

        if self.status == BS.CONFIRMED:
            refunded = getattr(self, "escrow_refunded", None)  # annotated by the selectors
            if refunded is None:
                refunded = Refund.objects.filter(payment_id=self.payment_id, status=OperationStatus.SUCCEEDED
                                                 ).aggregate(s=models.Sum("amount"))["s"] or 0
            # while confirmed the booking has at most one live refund, out of escrow
            taken = refunded - refund_fee_share(fee=self.fee, captured=self.amount_captured, refunded_before=0,
                                                refund=refunded)
            return self.amount_captured - self.fee - taken
        if self.refund_id is None or self.amount_captured <= 0:
            return 0

        refund = self.refund
        if refund.status != OperationStatus.PENDING:
            return 0
        return refund.amount - refund_fee_share(fee=self.fee, captured=self.amount_captured, refunded_before=0,
                                                refund=refund.amount)

    # --- transitions (pure: set fields only) ---------------------------------------------
    @transition(field=status, source=[BS.PENDING], target=BS.HELD)
    def mark_held(self) -> None:
        pass

    @transition(field=status, source=[BS.PENDING], target=BS.FAILED)
    def mark_failed(self, *, at) -> None:
        self.closed_at = at

    @transition(field=status, source=[BS.HELD], target=BS.CONFIRMED)
    def mark_confirmed(self, *, amount: int, fee: int, at) -> None:
        self.amount_captured = amount
        self.fee = fee
        self.confirmed_at = at

    @transition(field=status, source=[BS.CONFIRMED], target=BS.COMPLETED)
    def mark_completed(self, *, released: int, refunded: int, at) -> None:
        self.amount_released = released
        self.amount_refunded = refunded
        self.closed_at = at

    @transition(field=status, source=[BS.PENDING, BS.HELD, BS.CONFIRMED], target=BS.CANCELED)
    def mark_canceled(self, *, refunded: int = 0, at) -> None:
        self.amount_refunded = refunded
        self.closed_at = at

    @transition(field=status, source=[BS.PENDING, BS.HELD], target=BS.EXPIRED)
    def mark_expired(self, *, at) -> None:
        self.closed_at = at

    @transition(field=status, source=[BS.CONFIRMED], target=BS.CANCELED)
    def mark_disputed(self, *, dispute_id: str, released: int, at) -> None:
        """A chargeback ended the escrow: its share went to pending (the chargeback's source)."""
        self.dispute_id = dispute_id
        self.amount_released = released
        self.closed_at = at
