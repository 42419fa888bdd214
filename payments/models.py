"""Payments domain models: customers, payment methods, payments, attempts, captures, refunds,
their transition log, the decline-code table and the inbox of PSP webhooks.

State machines use django-fsm-2: the status fields are protected (no direct assignment) and the
transitions are pure domain verbs that set fields only. Services lock (`payments.locks`),
check `can_proceed`, transition, post to the ledger, record the PaymentEvent and the outbox
event, and `save()` — all in one atomic block (STYLE "State machines").
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from payera.core.horizon import CommitStampField
from payera.core.ids import IdField
from payera.merchants.scoping import MerchantScopedQuerySet
from payments.rowsql import PrecompiledSaveMixin
from psp_adapters.errors import PspReferenceNotFoundError


class CustomerQuerySet(MerchantScopedQuerySet):
    pass


class Customer(models.Model):
    id = IdField(prefix="cus")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    email = models.EmailField(max_length=254, blank=True, default="")
    name = models.CharField(max_length=256, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = CommitStampField()  # stamped in its INSERT: the polled list's order (payera.core.horizon)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["merchant", "-created_at", "-id"], name="customer_merchant_created_idx"),
            models.Index(Upper("email"), name="customer_email_upper_idx"),  # back-office search
        ]

    def __str__(self) -> str:
        return self.id


# --- Payment methods --------------------------------------------------------------------
class PaymentMethodType(models.TextChoices):
    CARD = "card", "Card"
    BANK_REDIRECT = "bank_redirect", "Bank redirect"
    SEPA_DEBIT = "sepa_debit", "SEPA debit"


class PaymentMethod(PrecompiledSaveMixin, models.Model):
    """A tokenized payment method. The card number (and an IBAN) is stored only encrypted through
    the secrets backend; BIN, last 4, brand, expiry and a keyed fingerprint are in clear. The CVC
    is never stored: it lives in memory for the one PSP call."""

    id = IdField(prefix="pm")
    # No index of its own: pm_merchant_created_idx leads with it. The customer's and the fingerprint's
    # are plain Meta indexes, without Django's varchar_pattern_ops `_like` twins (migration 0013).
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                 db_index=False)
    type = models.CharField(max_length=16, choices=PaymentMethodType.choices, default=PaymentMethodType.CARD)
    card_brand = models.CharField(max_length=16, blank=True, default="")
    card_bin = models.CharField(max_length=8, blank=True, default="")
    card_last4 = models.CharField(max_length=4, blank=True, default="")
    card_exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    card_exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    fingerprint = models.CharField(max_length=128, blank=True, default="")
    pan_ciphertext = models.TextField(blank=True, default="", editable=False)
    bank = models.CharField(max_length=64, blank=True, default="")
    iban_ciphertext = models.TextField(blank=True, default="", editable=False)
    iban_country = models.CharField(max_length=2, blank=True, default="")
    iban_last4 = models.CharField(max_length=4, blank=True, default="")
    account_holder_name = models.CharField(max_length=128, blank=True, default="")
    # connector -> PSP token / network transaction id of the first customer-initiated charge
    psp_tokens = models.JSONField(default=dict, blank=True, editable=False)  # unused: see `credentials`
    # The secrets-backend key the card number (or IBAN) is encrypted under: a saved method has its
    # own key (`pan-<uuid>`, for IBANs too), so detaching it crypto-shreds that key; "" = the
    # type's shared key (`payments-card-number`, `payments-iban`).
    pan_key = models.CharField(max_length=64, blank=True, default="", editable=False)
    detached_at = models.DateTimeField(null=True, blank=True)
    created_at = CommitStampField()  # stamped in its INSERT: the polled list's order (payera.core.horizon)

    objects = MerchantScopedQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["merchant", "-created_at", "-id"], name="pm_merchant_created_idx"),
            models.Index(fields=["card_last4"], name="pm_card_last4_idx"),  # back-office search
            models.Index(fields=["customer"], name="pm_customer_idx"),
            models.Index(fields=["fingerprint"], name="pm_fingerprint_idx"),
        ]

    def __str__(self) -> str:
        from payments.method_types import METHOD_TYPES

        spec = METHOD_TYPES.get(self.type)
        return spec.describe(self) if spec else f"{self.id} {self.type}"


class MandateStatus(models.TextChoices):
    ACTIVE = "active"
    INACTIVE = "inactive"  # revoked or its debit returned as not authorized: no further debits


class SepaMandate(models.Model):
    """A SEPA Direct Debit mandate: the shopper's authorization to debit the account, kept for as
    long as debits may be made under it (the evidence if a debit is disputed). One per payment
    method; its `reference` is sent to the PSP with every debit (first and recurring)."""

    id = IdField(prefix="mdt")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    payment_method = models.OneToOneField(PaymentMethod, on_delete=models.PROTECT, related_name="mandate")
    reference = models.CharField(max_length=35, unique=True)  # SEPA: at most 35 characters
    signed_at = models.DateTimeField()
    shopper_ip = models.GenericIPAddressField(null=True, blank=True)
    shopper_user_agent = models.CharField(max_length=512, blank=True, default="")
    status = models.CharField(max_length=16, choices=MandateStatus.choices, default=MandateStatus.ACTIVE)
    # why and when it became inactive (e.g. "return MD01 of dp_… on pay_…": `mandate_end_by_code`)
    inactive_reason = models.CharField(max_length=200, blank=True, default="")
    inactive_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = MerchantScopedQuerySet.as_manager()

    def __str__(self) -> str:
        return self.reference


# --- Payments ---------------------------------------------------------------------------
class CaptureMethod(models.TextChoices):
    AUTOMATIC = "automatic", "Automatic"
    MANUAL = "manual", "Manual"


class PaymentStatus(models.TextChoices):
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    FAILED = "failed"


PS = PaymentStatus


class PaymentQuerySet(MerchantScopedQuerySet):
    def capturable(self) -> PaymentQuerySet:
        return self.filter(status=PS.REQUIRES_CAPTURE)


class Payment(PrecompiledSaveMixin, ConcurrentTransitionMixin, models.Model):
    id = IdField(prefix="pay")
    # No index of its own: payment_merchant_created_idx leads with it (migration 0013).
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+", db_index=False)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    capture_method = models.CharField(max_length=16, choices=CaptureMethod.choices, default=CaptureMethod.AUTOMATIC)
    status = FSMField(choices=PS.choices, default=PS.REQUIRES_CONFIRMATION, protected=True)
    amount_capturable = models.BigIntegerField(default=0)
    amount_captured = models.BigIntegerField(default=0)
    amount_refunded = models.BigIntegerField(default=0)
    amount_disputed = models.BigIntegerField(default=0)  # open or lost disputes (a won one gives it back)
    # Plain Meta indexes (back-office search by cus_/pm_/last 4), without the `_like` twins.
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                 db_index=False)
    payment_method = models.ForeignKey(
        PaymentMethod, null=True, blank=True, on_delete=models.PROTECT, related_name="payments", db_index=False
    )
    setup_future_usage = models.CharField(max_length=16, blank=True, default="")
    off_session = models.BooleanField(default=False)
    return_url = models.URLField(max_length=2048, blank=True, default="")
    description = models.CharField(max_length=1000, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    last_error = models.JSONField(null=True, blank=True)
    next_action = models.JSONField(null=True, blank=True)
    # Set when the PSP's answer disagrees with the request (amount/currency): operations decide.
    review_reason = models.CharField(max_length=255, blank=True, default="")
    # The one mutation in flight (confirm, capture, cancel, refund), claimed under the row lock.
    inflight = models.CharField(max_length=32, blank=True, default="")
    inflight_at = models.DateTimeField(null=True, blank=True)
    authorized_at = models.DateTimeField(null=True, blank=True)
    # Set by internal callers (the subscription scheduler): one payment per key and merchant.
    idempotency_key = models.CharField(max_length=80, blank=True, default="", editable=False)
    created_at = CommitStampField()  # stamped in its INSERT: the polled list's order (payera.core.horizon)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PaymentQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["merchant", "-created_at", "-id"], name="payment_merchant_created_idx"),
            models.Index(fields=["status", "authorized_at"], name="payment_status_auth_idx"),
            # the back-office list (newest first; by status; by amount)
            models.Index(fields=["-created_at", "-id"], name="payment_created_idx"),
            models.Index(fields=["status", "-created_at"], name="payment_status_created_idx"),
            models.Index(fields=["amount"], name="payment_amount_idx"),
            models.Index(fields=["customer"], name="payment_customer_idx"),
            models.Index(fields=["payment_method"], name="payment_payment_method_idx"),
        ]
        # back-office actions (payera/staff/roles.py grants them by glob)
        permissions = [
            ("refund_payment", "Can refund payment"),
            ("cancel_payment", "Can cancel payment"),
            ("recover_payment", "Can run recovery on a payment"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=PS.values), name="payment_status_valid"),
            models.CheckConstraint(
                condition=Q(amount_capturable__gte=0, amount_captured__gte=0, amount_refunded__gte=0),
                name="payment_amounts_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(amount_captured__lte=models.F("amount")), name="payment_captured_le_amount"
            ),
            models.CheckConstraint(
                condition=Q(amount_refunded__lte=models.F("amount_captured")),
                name="payment_refunded_le_captured",
            ),
            models.UniqueConstraint(fields=["merchant", "idempotency_key"], condition=~Q(idempotency_key=""),
                                    name="payment_internal_idempotency_uniq"),
        ]

    def __str__(self) -> str:
        return self.id

    # --- transitions (pure: set fields only) ---------------------------------------------
    @transition(field=status, source=[PS.REQUIRES_PAYMENT_METHOD, PS.REQUIRES_CONFIRMATION], target=PS.PROCESSING)
    def mark_processing(self) -> None:
        self.last_error = None
        self.next_action = None

    @transition(field=status, source=[PS.PROCESSING], target=PS.REQUIRES_ACTION)
    def mark_requires_action(self, *, redirect_url: str) -> None:
        self.next_action = {"type": "redirect_to_url", "redirect_to_url": {"url": redirect_url}}

    @transition(field=status, source=[PS.PROCESSING, PS.REQUIRES_ACTION], target=PS.REQUIRES_CAPTURE)
    def mark_authorized(self, *, at) -> None:
        self.next_action = None
        self.amount_capturable = self.amount
        self.authorized_at = at

    @transition(field=status, source=[PS.PROCESSING, PS.REQUIRES_ACTION, PS.REQUIRES_CAPTURE], target=PS.SUCCEEDED)
    def mark_captured(self, *, amount: int, at) -> None:
        self.next_action = None
        self.amount_captured = amount
        self.amount_capturable = 0
        self.authorized_at = self.authorized_at or at

    @transition(field=status, source=[PS.PROCESSING, PS.REQUIRES_ACTION], target=PS.PROCESSING)
    def mark_in_review(self, *, reason: str) -> None:
        self.next_action = None
        self.review_reason = reason[:255]

    @transition(field=status, source=[PS.PROCESSING, PS.REQUIRES_ACTION], target=PS.FAILED)
    def mark_failed(self, *, error: dict) -> None:
        self.next_action = None
        self.last_error = error

    @transition(
        field=status,
        source=[PS.REQUIRES_PAYMENT_METHOD, PS.REQUIRES_CONFIRMATION, PS.REQUIRES_ACTION, PS.REQUIRES_CAPTURE],
        target=PS.CANCELED,
    )
    def mark_canceled(self) -> None:
        self.next_action = None
        self.amount_capturable = 0


# --- Attempts ---------------------------------------------------------------------------
class AttemptStatus(models.TextChoices):
    STARTED = "started"  # committed, the PSP call is about to be / being made
    REQUIRES_ACTION = "requires_action"  # the shopper must complete 3-D Secure / the bank page
    PENDING = "pending"  # the PSP accepted it; the outcome comes by webhook or inquiry
    UNKNOWN = "unknown"  # the call may have reached the PSP (timeout): recovery asks it
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    DECLINED = "declined"
    FAILED = "failed"  # surely not processed (PSP unavailable): the next connector may be tried
    CONFLICTED = "conflicted"  # the PSP reported another amount or currency: held for review
    VOIDED = "voided"


AS = AttemptStatus
ATTEMPT_OPEN = [AS.STARTED, AS.REQUIRES_ACTION, AS.PENDING, AS.UNKNOWN]


class PaymentAttempt(PrecompiledSaveMixin, ConcurrentTransitionMixin, models.Model):
    id = IdField(prefix="att")
    # No index of its own: attempt_payment_sequence_uniq leads with it. The merchant's is a plain Meta
    # index, without the `_like` twin (migration 0013).
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="attempts", db_index=False)
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+", db_index=False)
    sequence = models.PositiveSmallIntegerField()
    connector = models.CharField(max_length=32)
    status = FSMField(choices=AS.choices, default=AS.STARTED, protected=True)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    capture = models.BooleanField(default=False)  # asked the PSP to capture at once
    psp_reference = models.CharField(max_length=128, blank=True, default="")
    psp_amount = models.BigIntegerField(null=True, blank=True)  # as the PSP reported it
    psp_currency = models.CharField(max_length=3, blank=True, default="")
    decline_code = models.CharField(max_length=64, blank=True, default="")
    decline_class = models.CharField(max_length=16, blank=True, default="")
    psp_decline_code = models.CharField(max_length=32, blank=True, default="")
    decline_message = models.CharField(max_length=255, blank=True, default="")
    error = models.CharField(max_length=255, blank=True, default="")
    action_url = models.URLField(max_length=2048, blank=True, default="")
    # the number of the attempt's current void: its reference is `vd_<attempt>` for 1, then
    # `vd_<attempt>_<n>` (services.payments.void_reference). Moves on only when the PSP refused the
    # current one (a retry then needs a new reference: the PSP answers a known one with its first
    # result); a void whose outcome is unknown is sent again under the same reference.
    void_number = models.PositiveSmallIntegerField(default=1)
    # recovery: when to ask the PSP next, and how often it was asked
    next_inquiry_at = models.DateTimeField(null=True, blank=True)
    inquiries = models.PositiveSmallIntegerField(default=0)
    needs_attention = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["payment", "sequence"], name="attempt_payment_sequence_uniq"),
            models.CheckConstraint(condition=Q(status__in=AS.values), name="attempt_status_valid"),
        ]
        indexes = [
            models.Index(fields=["status", "next_inquiry_at"], name="attempt_recovery_idx"),
            # the back-office search and connector filter
            models.Index(fields=["psp_reference"], name="attempt_psp_reference_idx"),
            models.Index(fields=["connector", "payment"], name="attempt_connector_payment_idx"),
            models.Index(fields=["merchant"], name="attempt_merchant_idx"),
        ]

    def __str__(self) -> str:
        return self.id

    def _reported(self, amount: int | None, currency: str | None) -> None:
        if amount is not None:
            self.psp_amount = amount
        if currency:
            self.psp_currency = currency

    @transition(field=status, source=[AS.STARTED], target=AS.UNKNOWN)
    def mark_unknown(self, *, error: str, next_inquiry_at) -> None:
        self.error = error[:255]
        self.next_inquiry_at = next_inquiry_at

    @transition(field=status, source=[AS.STARTED, AS.UNKNOWN], target=AS.FAILED)
    def mark_failed(self, *, error: str, at) -> None:
        self.error = error[:255]
        self.resolved_at = at

    @transition(field=status, source=[AS.STARTED, AS.UNKNOWN], target=AS.PENDING)
    def mark_pending(self, *, psp_reference: str, next_inquiry_at) -> None:
        self.psp_reference = psp_reference or self.psp_reference
        self.next_inquiry_at = next_inquiry_at

    @transition(field=status, source=[AS.REQUIRES_ACTION], target=AS.FAILED)
    def mark_withdrawn(self, *, reason: str, at) -> None:
        """The shopper's challenge / bank page was canceled at the PSP at our request (the redirect
        expired, or the merchant canceled): nothing was or can be authorized."""
        self.error = reason[:255]
        self.resolved_at = at
        self.next_inquiry_at = None

    @transition(field=status, source=[AS.STARTED, AS.UNKNOWN, AS.PENDING], target=AS.REQUIRES_ACTION)
    def mark_requires_action(self, *, psp_reference: str, action_url: str, next_inquiry_at) -> None:
        self.psp_reference = psp_reference or self.psp_reference
        self.action_url = action_url
        self.next_inquiry_at = next_inquiry_at

    @transition(field=status, source=ATTEMPT_OPEN, target=AS.AUTHORIZED)
    def mark_authorized(self, *, psp_reference: str, amount: int, currency: str, at) -> None:
        self.psp_reference = psp_reference or self.psp_reference
        self._reported(amount, currency)
        self.resolved_at = at
        self.next_inquiry_at = None

    @transition(field=status, source=[*ATTEMPT_OPEN, AS.AUTHORIZED], target=AS.CAPTURED)
    def mark_captured(self, *, psp_reference: str, amount: int | None, currency: str | None, at) -> None:
        self.psp_reference = psp_reference or self.psp_reference
        self._reported(amount, currency)
        self.resolved_at = at
        self.next_inquiry_at = None

    @transition(field=status, source=ATTEMPT_OPEN, target=AS.DECLINED)
    def mark_declined(
        self, *, psp_reference: str, code: str, decline_class: str, psp_code: str, message: str, at
    ) -> None:
        self.psp_reference = psp_reference or self.psp_reference
        self.decline_code = code
        self.decline_class = decline_class
        self.psp_decline_code = psp_code[:32]
        self.decline_message = message[:255]
        self.resolved_at = at
        self.next_inquiry_at = None

    @transition(field=status, source=ATTEMPT_OPEN, target=AS.CONFLICTED)
    def mark_conflicted(self, *, psp_reference: str, amount: int, currency: str, at) -> None:
        self.psp_reference = psp_reference or self.psp_reference
        self._reported(amount, currency)
        self.resolved_at = at
        self.next_inquiry_at = None
        self.needs_attention = True

    # From a state before authorization too: a payment canceled while the shopper was at 3-D
    # Secure or the bank page is voided at the PSP, which then can no longer authorize it.
    @transition(field=status, source=[AS.AUTHORIZED, AS.REQUIRES_ACTION, AS.PENDING, AS.UNKNOWN, AS.STARTED],
                target=AS.VOIDED)
    def mark_voided(self) -> None:
        pass


# --- Captures and refunds ---------------------------------------------------------------
class OperationStatus(models.TextChoices):
    PENDING = "pending"  # sent (or being sent); the PSP's outcome is not known yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"


OS = OperationStatus


# A capture or refund recovery failed because the PSP had no record of it (PspReferenceNotFoundError's
# code): the only failure the PSP's later "done" may overturn (`mark_found`).
NOT_AT_PSP = PspReferenceNotFoundError.code


class Capture(PrecompiledSaveMixin, ConcurrentTransitionMixin, models.Model):
    """One capture of an authorization (the sandboxes allow one, partial, the rest released)."""

    id = IdField(prefix="cap")
    # Plain Meta indexes, without the `_like` twins (migration 0013).
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="captures", db_index=False)
    attempt = models.ForeignKey(PaymentAttempt, on_delete=models.PROTECT, related_name="captures", db_index=False)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    fee = models.BigIntegerField(default=0)  # the merchant's fee on it (refunds return a share)
    status = FSMField(choices=OS.choices, default=OS.PENDING, protected=True)
    psp_reference = models.CharField(max_length=128, blank=True, default="")
    failure_code = models.CharField(max_length=64, blank=True, default="")
    next_inquiry_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="capture_amount_positive"),
            # one live capture per authorization, whoever writes
            models.UniqueConstraint(fields=["attempt"], condition=~Q(status="failed"), name="capture_one_per_attempt"),
        ]
        indexes = [
            # a reconciliation report's period: the captures that succeeded inside it (missing at PSP)
            models.Index(fields=["updated_at"], condition=Q(status="succeeded"), name="capture_succeeded_at_idx"),
            models.Index(fields=["payment"], name="capture_payment_idx"),
            # all of an attempt's captures, failed ones too (capture_one_per_attempt is partial)
            models.Index(fields=["attempt"], name="capture_attempt_idx"),
        ]

    def __str__(self) -> str:
        return self.id

    @transition(field=status, source=[OS.PENDING], target=OS.SUCCEEDED)
    def mark_succeeded(self, *, psp_reference: str = "") -> None:
        self.psp_reference = psp_reference or self.psp_reference

    @transition(field=status, source=[OS.PENDING], target=OS.FAILED)
    def mark_failed(self, *, code: str) -> None:
        self.failure_code = code[:64]

    def _failed_as_unknown_at_psp(self) -> bool:
        return self.failure_code == NOT_AT_PSP

    # Failed by recovery because the PSP did not know it (`NOT_AT_PSP`), and then reported done by
    # the PSP after all: it happened (payments.services.payments.capture_record_outcome).
    @transition(field=status, source=[OS.FAILED], target=OS.SUCCEEDED, conditions=[_failed_as_unknown_at_psp])
    def mark_found(self, *, psp_reference: str = "") -> None:
        self.psp_reference = psp_reference or self.psp_reference
        self.failure_code = ""


REFUND_NOT_AT_PSP = NOT_AT_PSP  # the refunds' name of it


class RefundQuerySet(MerchantScopedQuerySet):
    def live(self) -> RefundQuerySet:
        return self.exclude(status=OS.FAILED)


class Refund(ConcurrentTransitionMixin, models.Model):
    id = IdField(prefix="re")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    attempt = models.ForeignKey(PaymentAttempt, on_delete=models.PROTECT, related_name="refunds")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = FSMField(choices=OS.choices, default=OS.PENDING, protected=True)
    reason = models.CharField(max_length=64, blank=True, default="")
    psp_reference = models.CharField(max_length=128, blank=True, default="")
    failure_code = models.CharField(max_length=64, blank=True, default="")
    next_inquiry_at = models.DateTimeField(null=True, blank=True)
    created_at = CommitStampField()  # stamped in its INSERT: the polled list's order (payera.core.horizon)
    updated_at = models.DateTimeField(auto_now=True)
    # when the PSP's success was recorded, and when its return (a reversal) was: each set once by
    # its transition, so a later save moves neither (reconciliation's periods and aging read them)
    succeeded_at = models.DateTimeField(null=True, blank=True, editable=False)
    reversed_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = RefundQuerySet.as_manager()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive")]
        indexes = [
            models.Index(fields=["merchant", "-created_at", "-id"], name="refund_merchant_created_idx"),
            models.Index(fields=["psp_reference"], name="refund_psp_reference_idx"),  # back-office search
            # a reconciliation report's period: the refunds that succeeded inside it, returned since
            # or not (missing at PSP) ...
            models.Index(fields=["succeeded_at"], condition=Q(succeeded_at__isnull=False),
                         name="refund_succeeded_time_idx"),
            # ... and those returned inside it (refund reversals)
            models.Index(fields=["reversed_at"], condition=Q(reversed_at__isnull=False), name="refund_reversed_at_idx"),
        ]

    def __str__(self) -> str:
        return self.id

    @transition(field=status, source=[OS.PENDING], target=OS.SUCCEEDED)
    def mark_succeeded(self, *, psp_reference: str = "") -> None:
        self.psp_reference = psp_reference or self.psp_reference
        self.next_inquiry_at = None
        self.succeeded_at = timezone.now()

    @transition(field=status, source=[OS.PENDING], target=OS.FAILED)
    def mark_failed(self, *, code: str) -> None:
        self.failure_code = code[:64]
        self.next_inquiry_at = None

    def _failed_as_unknown_at_psp(self) -> bool:
        return self.failure_code == REFUND_NOT_AT_PSP

    # Failed by recovery because the PSP did not know it (`REFUND_NOT_AT_PSP`), and then reported
    # done by the PSP after all: it happened (payments.services.refunds.refund_record_outcome).
    @transition(field=status, source=[OS.FAILED], target=OS.SUCCEEDED, conditions=[_failed_as_unknown_at_psp])
    def mark_found(self, *, psp_reference: str = "") -> None:
        self.psp_reference = psp_reference or self.psp_reference
        self.failure_code = ""
        self.next_inquiry_at = None
        self.succeeded_at = timezone.now()

    # The PSP reports a refund it had reported succeeded as failed after all (the shopper's bank sent
    # it back): the money is the merchant's again (payments.services.refunds._refund_reverse).
    @transition(field=status, source=[OS.SUCCEEDED], target=OS.FAILED)
    def mark_reversed(self, *, code: str) -> None:
        self.failure_code = code[:64]
        self.next_inquiry_at = None
        self.reversed_at = timezone.now()


# --- Disputes (chargebacks) ---------------------------------------------------------------
class DisputeStatus(models.TextChoices):
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    WON = "won"
    LOST = "lost"


DS = DisputeStatus


class Dispute(ConcurrentTransitionMixin, models.Model):
    """A chargeback opened by the PSP on a captured payment; created from its dispute webhook,
    unique per (connector, PSP dispute id). needs_response -> under_review (evidence sent) ->
    won | lost; needs_response -> won | lost when the PSP decides before any answer."""

    id = IdField(prefix="dp")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="disputes")
    attempt = models.ForeignKey(PaymentAttempt, on_delete=models.PROTECT, related_name="disputes")
    connector = models.CharField(max_length=32)
    psp_dispute_id = models.CharField(max_length=128)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    fee = models.BigIntegerField(default=0)  # the chargeback fee taken from the merchant
    reason = models.CharField(max_length=32)
    psp_reason = models.CharField(max_length=32, blank=True, default="")
    status = FSMField(choices=DS.choices, default=DS.NEEDS_RESPONSE, protected=True)
    evidence_text = models.TextField(blank=True, default="")
    evidence_submitted_at = models.DateTimeField(null=True, blank=True)  # the PSP took the evidence
    # sent to the PSP, its answer not known yet (a timeout): sent again with the same reference
    # (`dispute_evidence_recover`) until the PSP says taken or refused
    evidence_pending_at = models.DateTimeField(null=True, blank=True)
    evidence_error = models.CharField(max_length=200, blank=True, default="")  # the PSP's last refusal
    evidence_due_by = models.DateTimeField(null=True, blank=True)  # the PSP's deadline for evidence
    # recovery's resends of pending evidence, on the attempts' schedule (`recovery_delay`): how many
    # so far and when the next is due; past PAYMENTS_RECOVERY_MAX_INQUIRIES a stuck item for support
    evidence_sends = models.PositiveIntegerField(default=0)
    evidence_next_send_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = CommitStampField()  # stamped in its INSERT: the polled list's order (payera.core.horizon)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MerchantScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connector", "psp_dispute_id"], name="dispute_psp_id_uniq"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="dispute_amount_positive"),
        ]
        indexes = [models.Index(fields=["merchant", "-created_at", "-id"], name="dispute_merchant_created_idx")]

    def __str__(self) -> str:
        return self.id

    @transition(field=status, source=[DS.NEEDS_RESPONSE], target=DS.UNDER_REVIEW)
    def submit_evidence(self, *, text: str, at) -> None:
        self.evidence_text = text
        self.evidence_submitted_at = at
        self.evidence_pending_at = None
        self.evidence_next_send_at = None
        self.evidence_error = ""

    @transition(field=status, source=[DS.NEEDS_RESPONSE, DS.UNDER_REVIEW], target=DS.WON)
    def mark_won(self, *, at) -> None:
        self.closed_at = at
        self.evidence_pending_at = None  # decided: evidence still in flight no longer matters
        self.evidence_next_send_at = None

    @transition(field=status, source=[DS.NEEDS_RESPONSE, DS.UNDER_REVIEW], target=DS.LOST)
    def mark_lost(self, *, at) -> None:
        self.closed_at = at
        self.evidence_pending_at = None
        self.evidence_next_send_at = None


# --- Transition log ---------------------------------------------------------------------
class PaymentEvent(models.Model):
    """Who moved what from where to where, and when: one row per transition, written in the same
    transaction as the transition."""

    # No index of its own: payment_event_payment_idx leads with it (migration 0013).
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="events", db_index=False)
    object_type = models.CharField(max_length=16)  # payment | attempt | capture | refund
    object_id = models.CharField(max_length=40)
    transition = models.CharField(max_length=40)
    from_status = models.CharField(max_length=32)
    to_status = models.CharField(max_length=32)
    actor = models.CharField(max_length=80)  # api_key:key_…, psp:<connector>, system:recovery, staff:<id>
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["payment", "id"], name="payment_event_payment_idx")]

    def __str__(self) -> str:
        return f"{self.object_id} {self.from_status}->{self.to_status} by {self.actor}"


# --- Decline codes ----------------------------------------------------------------------
class DeclineCode(models.Model):
    """A PSP's decline code -> normalized code and class. Seeded from the adapters' tables by a
    data migration; operations may edit it in the admin (it overrides the adapters' defaults)."""

    psp = models.CharField(max_length=32)
    psp_code = models.CharField(max_length=32)
    code = models.CharField(max_length=64)
    decline_class = models.CharField(
        max_length=16, choices=[("soft", "soft"), ("hard", "hard"), ("technical", "technical")]
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["psp", "psp_code"], name="decline_code_psp_code_uniq")]
        ordering = ["psp", "psp_code"]

    def __str__(self) -> str:
        return f"{self.psp}:{self.psp_code} -> {self.code} ({self.decline_class})"


# --- Inbound PSP webhooks ---------------------------------------------------------------
class InboxStatus(models.TextChoices):
    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"  # stale, duplicate in effect, or a kind we do not act on (logged)
    PARKED = "parked"  # refers to an attempt/operation we do not know yet: retried later
    FAILED = "failed"  # parked too long: raised to operations


class PspWebhook(models.Model):
    """The raw body of one verified PSP webhook, unique per (connector, PSP event id)."""

    connector = models.CharField(max_length=32)
    event_id = models.CharField(max_length=128)
    kind = models.CharField(max_length=16)
    reference = models.CharField(max_length=64, blank=True, default="")  # our att_/re_/cap_ id
    body = models.TextField()
    headers = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=InboxStatus.choices, default=InboxStatus.RECEIVED)
    tries = models.PositiveSmallIntegerField(default=0)
    next_try_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=255, blank=True, default="")
    received_at = models.DateTimeField(default=timezone.now, editable=False)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connector", "event_id"], name="psp_webhook_event_uniq")]
        indexes = [models.Index(fields=["status", "next_try_at"], name="psp_webhook_status_idx")]

    def __str__(self) -> str:
        return f"{self.connector}:{self.event_id} ({self.status})"


# Saved credentials and subscriptions live in their own module (same app label).
from payments.bookings_models import Booking, BookingStatus  # noqa: E402,F401  (bookings: escrow)
from payments.models_recurring import (  # noqa: E402, F401
    ChargeStatus,
    PaymentMethodCredential,
    Subscription,
    SubscriptionCharge,
    SubscriptionInterval,
    SubscriptionStatus,
)
from payments.routing_models import BinRange, RoutingRule  # noqa: E402,F401 - registered with the app's models
from payments.stuck_models import StuckItem  # noqa: E402,F401 - registered with the app's models
