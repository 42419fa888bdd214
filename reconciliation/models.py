"""Merchant settlement and payouts (docs/settlement.md).

- `MerchantPayoutSettings`: per merchant, minimum payout, reserve kept back, bank account
  (encrypted through payera.secrets; only a masked reference is stored in clear). It is also the
  row the settlement and payout services lock per merchant (one lock helper per aggregate).
- `SettlementRun`: one per merchant, currency and cutoff date; moves merchant pending ->
  available with the journal `settlement:<merchant>:<currency>:<cutoff date>`.
- `SettlementItem`: each merchant-pending ledger entry a run settled; `entry_id` is unique, so an
  entry is settled at most once whoever runs what concurrently.
- `Payout`: available -> payouts in transit -> bank cash (paid) or back to available (failed).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from payera.core.ids import IdField
from payera.merchants.scoping import MerchantScopedQuerySet

DEFAULT_MINIMUM_PAYOUT = 1000  # minor units of the payout's currency
DEFAULT_RESERVE_BPS = 0  # basis points of available kept back at each payout


class MerchantPayoutSettings(models.Model):
    merchant = models.OneToOneField(
        "merchants.Merchant", on_delete=models.PROTECT, primary_key=True, related_name="+"
    )
    payouts_enabled = models.BooleanField(default=True)
    minimum_payout_amount = models.BigIntegerField(
        default=DEFAULT_MINIMUM_PAYOUT, help_text="Minor units: no payout below this amount."
    )
    reserve_bps = models.PositiveIntegerField(
        default=DEFAULT_RESERVE_BPS, help_text="Basis points (1/100 %) of available kept back at each payout."
    )
    # The bank account: encrypted JSON {"account": ..., "holder": ...}; only the masked form is clear.
    bank_account_ciphertext = models.TextField(blank=True, default="", editable=False)
    bank_account_masked = models.CharField(max_length=40, blank=True, default="", editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MerchantScopedQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "merchant payout settings"
        constraints = [
            models.CheckConstraint(condition=Q(minimum_payout_amount__gte=1), name="payout_settings_minimum_gte_1"),
            models.CheckConstraint(condition=Q(reserve_bps__lte=10000), name="payout_settings_reserve_le_100pct"),
        ]

    def __str__(self) -> str:
        return f"payout settings of {self.merchant_id}"


class SettlementRunStatus(models.TextChoices):
    SETTLED = "settled", "Settled"  # a journal moved `amount` from pending to available
    CARRIED_FORWARD = "carried_forward", "Carried forward"  # nothing moved: net <= 0, kept for later


class SettlementRunQuerySet(MerchantScopedQuerySet):
    pass


class SettlementRun(models.Model):
    id = IdField(prefix="stl")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    cutoff_date = models.DateField(help_text="Last capture day (UTC) included.")
    cutoff_at = models.DateTimeField(help_text="Entries whose journal occurred strictly before this are settled.")
    status = models.CharField(max_length=20, choices=SettlementRunStatus.choices)
    amount = models.BigIntegerField(default=0, help_text="Moved pending -> available (minor units).")
    credits = models.BigIntegerField(default=0, help_text="Sum of settled credits (captures net of fees).")
    debits = models.BigIntegerField(default=0, help_text="Sum of settled debits (refunds, chargebacks).")
    carried_amount = models.BigIntegerField(
        default=0, help_text="Net of eligible entries left for a later run (<= 0) when nothing moved."
    )
    item_count = models.PositiveIntegerField(default=0)
    journal_reference = models.CharField(max_length=255, blank=True, default="")
    payout = models.ForeignKey(
        "reconciliation.Payout", null=True, blank=True, on_delete=models.PROTECT, related_name="settlement_runs"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = SettlementRunQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "currency", "cutoff_date"], name="settlement_run_uniq"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="settlement_run_amount_gte_0"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="settlement_run_currency_iso"),
        ]
        indexes = [models.Index(fields=["merchant", "currency", "-created_at"], name="settlement_run_mer_cur_idx")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.merchant_id} {self.currency} {self.cutoff_date}"


class SettlementItem(models.Model):
    """One merchant-pending ledger entry settled by a run (amount: positive = owed to the merchant)."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(SettlementRun, on_delete=models.PROTECT, related_name="items")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    entry_id = models.BigIntegerField(unique=True)
    journal_reference = models.CharField(max_length=255)
    kind = models.CharField(max_length=32)
    occurred_at = models.DateTimeField()
    amount = models.BigIntegerField()

    objects = MerchantScopedQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["run", "occurred_at"], name="settlement_item_run_idx")]

    def __str__(self) -> str:
        return f"{self.journal_reference} {self.amount}"


class PayoutStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_TRANSIT = "in_transit", "In transit"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed"


class PayoutQuerySet(MerchantScopedQuerySet):
    pass


class Payout(ConcurrentTransitionMixin, models.Model):
    id = IdField(prefix="po")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    status = FSMField(choices=PayoutStatus.choices, default=PayoutStatus.PENDING, protected=True)
    payout_date = models.DateField(help_text="One payout per merchant, currency and day.")
    # How the amount was found: available_before - reserve_kept = amount.
    available_before = models.BigIntegerField()
    reserve_kept = models.BigIntegerField(default=0)
    bank_account_masked = models.CharField(max_length=40, blank=True, default="")
    failure_reason = models.CharField(max_length=200, blank=True, default="")
    journal_reference = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    in_transit_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    objects = PayoutQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "currency", "payout_date"], name="payout_one_per_day"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_amount_gt_0"),
            models.CheckConstraint(condition=Q(status__in=PayoutStatus.values), name="payout_status_valid"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="payout_currency_iso"),
        ]
        indexes = [models.Index(fields=["merchant", "-created_at", "-id"], name="payout_merchant_created_idx")]
        permissions = [
            ("mark_paid_payout", "Can mark a payout paid"),
            ("mark_failed_payout", "Can mark a payout failed"),
            ("export_payout", "Can export payout files and statements"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.id

    @transition(field=status, source=PayoutStatus.PENDING, target=PayoutStatus.IN_TRANSIT)
    def mark_in_transit(self, *, at) -> None:
        self.in_transit_at = at

    @transition(field=status, source=PayoutStatus.IN_TRANSIT, target=PayoutStatus.PAID)
    def mark_paid(self, *, at) -> None:
        self.paid_at = at

    @transition(field=status, source=[PayoutStatus.PENDING, PayoutStatus.IN_TRANSIT], target=PayoutStatus.FAILED)
    def mark_failed(self, *, at, reason: str) -> None:
        self.failed_at = at
        self.failure_reason = reason[:200]
