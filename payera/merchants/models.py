"""Merchants and their API keys.

A merchant's status moves only through its FSM transitions (`suspend`, `reactivate`); an API key
is stored as a visible prefix plus the SHA-256 of the whole secret (docs/decisions/api-key-storage.md).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from payera.core.ids import IdField
from payera.core.money import PER_CURRENCY_FALLBACK, per_currency_amount, per_currency_table_problems


class MerchantStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"


class Merchant(ConcurrentTransitionMixin, models.Model):
    id = IdField(prefix="mer")
    name = models.CharField(max_length=200)
    status = FSMField(choices=MerchantStatus.choices, default=MerchantStatus.ACTIVE, protected=True)
    default_currency = models.CharField(max_length=3, default="EUR")
    settlement_delay_days = models.PositiveSmallIntegerField(default=2)
    fee_schedule = models.CharField(max_length=64, default="standard", help_text="Reference of the fee schedule.")
    # PSP connector names in routing order (names of settings.PSP_CONNECTORS).
    connectors = models.JSONField(default=list, blank=True)
    # Staff refunds of a payment taking what was refunded of it without approval above the
    # threshold of its currency wait for a second finance user's approval (four eyes;
    # docs/backoffice.md): `refund_approval_thresholds` names a currency's threshold in its own minor
    # units; any other currency takes `refund_approval_threshold`, in hundredths of the major unit
    # scaled to the currency's ISO 4217 exponent (50000: 500.00 EUR, ¥500, 500.000 BHD).
    # 0: every staff refund needs it.
    refund_approval_threshold = models.BigIntegerField(
        default=50_000,
        help_text="Staff refunds above this amount need a second finance user's approval: hundredths of the "
        "major unit, scaled to the payment's currency (50000: 500.00 EUR, ¥500, 500.000 BHD), for a currency "
        "the table below does not name. 0: every staff refund does.",
    )
    refund_approval_thresholds = models.JSONField(
        default=dict, blank=True,
        help_text='Per currency, in its own minor units, e.g. {"JPY": 80000, "KWD": 150000}: the threshold '
        "of that currency instead of the one above.",
    )  # fmt: skip
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        # back-office actions (payera/staff/roles.py)
        permissions = [("suspend_merchant", "Can suspend or reactivate merchant")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=MerchantStatus.values), name="merchant_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(refund_approval_threshold__gte=0), name="merchant_refund_threshold_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(default_currency__regex=r"^[A-Z]{3}$"), name="merchant_default_currency_iso"
            ),
            models.CheckConstraint(condition=Q(settlement_delay_days__lte=60), name="merchant_settlement_delay_max"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def is_active(self) -> bool:
        return self.status == MerchantStatus.ACTIVE

    def refund_approval_threshold_for(self, currency: str) -> int:
        """The four-eyes threshold of staff refunds in `currency`, in its minor units."""
        table = {**(self.refund_approval_thresholds or {}), PER_CURRENCY_FALLBACK: self.refund_approval_threshold}
        return per_currency_amount(table, currency, setting=f"merchant {self.pk} refund_approval_thresholds",
                                   warn=False)  # fmt: skip

    def clean(self) -> None:
        table = self.refund_approval_thresholds
        if isinstance(table, dict):
            table = {**table, PER_CURRENCY_FALLBACK: 0}
        problems = per_currency_table_problems(table, setting="refund_approval_thresholds", least=0)
        if problems:
            raise ValidationError({"refund_approval_thresholds": problems})

    @transition(field=status, source=MerchantStatus.ACTIVE, target=MerchantStatus.SUSPENDED)
    def suspend(self) -> None:
        pass

    @transition(field=status, source=MerchantStatus.SUSPENDED, target=MerchantStatus.ACTIVE)
    def reactivate(self) -> None:
        pass


class ApiKeyScope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Read and write"


class ApiKeyQuerySet(models.QuerySet):
    def for_merchant(self, merchant: Merchant) -> ApiKeyQuerySet:
        return self.filter(merchant=merchant)

    def usable(self, *, now=None) -> ApiKeyQuerySet:
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class ApiKey(models.Model):
    """A secret API key. Only `prefix` (visible, for lookup and display) and the SHA-256 of the
    whole key are stored; the key itself is shown once, when created."""

    id = IdField(prefix="key")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=32, db_index=True, editable=False)
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    scope = models.CharField(max_length=8, choices=ApiKeyScope.choices, default=ApiKeyScope.WRITE)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [("revoke_apikey", "Can revoke API key")]
        constraints = [
            models.CheckConstraint(condition=Q(scope__in=ApiKeyScope.values), name="api_key_scope_valid"),
            models.CheckConstraint(
                condition=Q(secret_hash__regex=r"^[0-9a-f]{64}$"),  # noqa: S106 - a hash format, not a secret
                name="api_key_hash_hex",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.id})"

    @property
    def masked(self) -> str:
        return f"{self.prefix}…"

    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, *, now=None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())
