"""Saved-credential and subscription models of the payments app (imported by payments.models, so
their app label is `payments`). Kept in their own module to keep payments/models.py readable.

- `PaymentMethodCredential`: per connector, what a customer-initiated payment (CIT) that saved the
  method left us for later merchant-initiated ones (MIT): the PSP's token (or mandate reference)
  and the card scheme's network transaction id of that first authorization.
- `Subscription`: a fixed amount charged every `interval_count` × `interval` (django-fsm-2:
  active → past_due → active (recovered) | unpaid; any → canceled, at once or, with
  `cancel_at_period_end`, by the scheduler when the period paid last ends).
- `SubscriptionCharge`: one charge try of one period, unique per (subscription, period, try): the
  deterministic idempotency key of the period's payment.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from payera.core.horizon import CommitStampField
from payera.core.ids import IdField
from payera.merchants.scoping import MerchantScopedQuerySet


class PaymentMethodCredential(models.Model):
    payment_method = models.ForeignKey("payments.PaymentMethod", on_delete=models.PROTECT,
                                       related_name="credentials")
    connector = models.CharField(max_length=32)
    psp_token = models.CharField(max_length=128, blank=True, default="")  # token or mandate reference
    network_transaction_id = models.CharField(max_length=64, blank=True, default="")
    attempt = models.CharField(max_length=40, blank=True, default="")  # the CIT attempt that gave it
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["payment_method", "connector"], name="pm_credential_connector_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.payment_method_id}@{self.connector}"


class SubscriptionInterval(models.TextChoices):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active"
    PAST_DUE = "past_due"  # a charge failed (soft): retried on the dunning schedule
    UNPAID = "unpaid"  # retries exhausted or a hard failure: no more charges
    CANCELED = "canceled"


SS = SubscriptionStatus


class Subscription(ConcurrentTransitionMixin, models.Model):
    id = IdField(prefix="sub")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("payments.Customer", on_delete=models.PROTECT, related_name="+")
    payment_method = models.ForeignKey("payments.PaymentMethod", on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    interval = models.CharField(max_length=8, choices=SubscriptionInterval.choices)
    interval_count = models.PositiveSmallIntegerField(default=1)
    status = FSMField(choices=SS.choices, default=SS.ACTIVE, protected=True)
    description = models.CharField(max_length=1000, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    anchor = models.DateTimeField()  # period n starts at anchor + n intervals
    current_period = models.PositiveIntegerField(default=0)  # the period being (or next to be) paid
    next_charge_at = models.DateTimeField(null=True, blank=True)  # null: nothing more to charge
    retries = models.PositiveSmallIntegerField(default=0)  # failed tries of the current period
    dunning_started_at = models.DateTimeField(null=True, blank=True)
    last_decline_code = models.CharField(max_length=64, blank=True, default="")
    # why the last charge failed: {"code", "decline_code", "message"} (the payment's last_error, or
    # the refusal before any PSP call: a detached method, a mandate no longer active…); null once paid
    last_error = models.JSONField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    # when the merchant resumed it from `unpaid` with a payment method (`mark_resumed`): the charge
    # then made is one try, no dunning (failing, it is `unpaid` again); null once it settles
    resumed_at = models.DateTimeField(null=True, blank=True)
    # the merchant asked to end it when the period paid last ends (`subscription_create`,
    # `subscription_update`): at that period's end the scheduler cancels it instead of charging the
    # next one (`ends_at_period_end`); unset before, it renews
    cancel_at_period_end = models.BooleanField(default=False)
    # the dunning of later periods, set aside while an older period whose debit was returned is
    # collected again, restored once the subscription reaches them (`mark_paid_later_due`):
    # {"<period>": {"retries", "dunning_started_at", "next_charge_at", "last_decline_code",
    # "last_error"}} (date-times in ISO 8601; `next_charge_at` null: its failure was final); null: none
    later_dunning = models.JSONField(null=True, blank=True)
    created_at = CommitStampField()  # stamped in its INSERT: the polled list's order (payera.core.horizon)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MerchantScopedQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["merchant", "-created_at", "-id"], name="sub_merchant_created_idx"),
            models.Index(fields=["status", "next_charge_at"], name="sub_status_due_idx"),
        ]
        permissions = [("cancel_subscription", "Can cancel subscription")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="sub_amount_positive"),
            models.CheckConstraint(condition=Q(interval_count__gte=1), name="sub_interval_count_positive"),
            models.CheckConstraint(condition=Q(status__in=SS.values), name="sub_status_valid"),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def ends_at_period_end(self) -> bool:
        """Set to cancel when the period paid last ends, and it has one: `active` past its first
        period (`active` at period 0 is a subscription whose first period is not paid yet — one
        created with the flag, its first charge under way: that period is charged, and dunned, as
        any; it ends once paid). Its `next_charge_at` is then that end, not a charge."""
        return self.cancel_at_period_end and self.status == SS.ACTIVE and self.current_period > 0

    # --- transitions (pure) ------------------------------------------------------------------
    @transition(field=status, source=[SS.ACTIVE, SS.PAST_DUE], target=SS.ACTIVE)
    def mark_paid(self, *, next_period: int, next_charge_at, tries: int = 0) -> None:
        """`next_period`: the first period not paid yet; `tries`: the tries it already had (a
        charge of it that failed while an older, returned period was being collected)."""
        self.current_period = next_period
        self.next_charge_at = next_charge_at
        self.retries = tries
        self.dunning_started_at = None
        self.last_decline_code = ""
        self.last_error = None
        self.resumed_at = None

    @transition(field=status, source=[SS.ACTIVE, SS.PAST_DUE], target=SS.PAST_DUE)
    def mark_paid_later_due(self, *, period: int, retries: int, dunning_started_at, next_charge_at,
                            decline_code: str, error: dict | None) -> None:
        """A returned period was paid again, and the first period not paid after it was in dunning
        when the return came (or failed while the older one was collected): the subscription stays
        past due on that period, its dunning as it was (`later_dunning`), not started over."""
        self.current_period = period
        self.retries = retries
        self.dunning_started_at = dunning_started_at
        self.next_charge_at = next_charge_at
        self.last_decline_code = decline_code[:64]
        self.last_error = error
        self.resumed_at = None

    @transition(field=status, source=[SS.ACTIVE, SS.PAST_DUE], target=SS.PAST_DUE)
    def mark_past_due(self, *, decline_code: str, retry_at, at, error: dict | None = None) -> None:
        self.retries += 1
        self.dunning_started_at = self.dunning_started_at or at
        self.last_decline_code = decline_code[:64]
        self.last_error = error
        self.next_charge_at = retry_at

    @transition(field=status, source=[SS.ACTIVE, SS.PAST_DUE], target=SS.PAST_DUE)
    def mark_returned(self, *, period: int, tries: int, retry_at, at, error: dict) -> None:
        """The debit that paid `period` (older than the current one) was returned by the bank: that
        period is due again, on the dunning schedule counted from the return (`at`), its `tries`
        (the returned one included) counted as its failed tries."""
        self.current_period = period
        self.retries = tries
        self.dunning_started_at = at
        self.last_decline_code = str(error["code"])[:64]
        self.last_error = error
        self.next_charge_at = retry_at
        self.resumed_at = None

    @transition(field=status, source=[SS.ACTIVE, SS.PAST_DUE], target=SS.UNPAID)
    def mark_unpaid(self, *, decline_code: str, at, error: dict | None = None) -> None:
        self.dunning_started_at = self.dunning_started_at or at
        self.last_decline_code = decline_code[:64]
        self.last_error = error
        self.next_charge_at = None
        self.resumed_at = None
        self.later_dunning = None

    @transition(field=status, source=[SS.UNPAID], target=SS.PAST_DUE)
    def mark_resumed(self, *, period: int, try_number: int, at) -> None:
        """The merchant gave a payment method to an unpaid subscription: `period` (the one in
        progress at `at`) is charged now, as try `try_number` (one not used yet in that period)."""
        if period != self.current_period:
            self.dunning_started_at = at
        self.current_period = period
        self.retries = try_number
        self.next_charge_at = at
        self.resumed_at = at

    @transition(field=status, source=[SS.ACTIVE, SS.PAST_DUE, SS.UNPAID], target=SS.CANCELED)
    def mark_canceled(self, *, at) -> None:
        self.canceled_at = at
        self.next_charge_at = None
        self.resumed_at = None
        self.later_dunning = None


class ChargeStatus(models.TextChoices):
    PENDING = "pending"  # claimed; its payment is being made or its outcome is not known yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # succeeded, then its debit was returned by the bank (a dispute `debit_returned`): its period
    # is not paid any more (a retry of it may succeed: at most one `succeeded` per period)
    RETURNED = "returned"


class SubscriptionCharge(models.Model):
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="charges")
    period = models.PositiveIntegerField()
    try_number = models.PositiveSmallIntegerField()
    idempotency_key = models.CharField(max_length=80, unique=True)
    payment = models.ForeignKey("payments.Payment", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    status = models.CharField(max_length=16, choices=ChargeStatus.choices, default=ChargeStatus.PENDING)
    decline_code = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscription", "period", "try_number"], name="sub_charge_try_uniq"),
            # at most one charge per period succeeds, whoever writes
            models.UniqueConstraint(fields=["subscription", "period"], condition=Q(status="succeeded"),
                                    name="sub_charge_one_paid_per_period"),
        ]

    def __str__(self) -> str:
        return self.idempotency_key
