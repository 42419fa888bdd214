"""Routing as data the operations team edits in the admin: per-merchant rules (currency, amount
range, card brand, BIN country, method type, priority, weight) and the BIN table that says which
country issued a card. Imported at the end of payments/models.py; decisions stay pure in
payments/routing.py."""

from __future__ import annotations

import pycountry
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from payments.cards import _BRANDS

BRANDS = tuple(sorted({brand for brand, _, _ in _BRANDS}))
METHOD_TYPES = ("card", "bank_redirect", "sepa_debit")


def _codes(value: str) -> list[str]:
    return [part.strip().upper() for part in (value or "").split(",") if part.strip()]


class RoutingRule(models.Model):
    """One connector for the payments that match every condition set (empty = any). Lower
    `priority` is tried first; among rules of equal priority, `weight` splits the volume (a
    payment's order is reproducible: seeded by its id). A merchant without enabled rules is
    routed by its ordered `connectors` list."""

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.CASCADE, related_name="routing_rules")
    connector = models.CharField(max_length=32)
    priority = models.PositiveSmallIntegerField(default=0)
    weight = models.PositiveSmallIntegerField(default=100, help_text="Share among rules of equal priority; 0 = off.")
    currencies = models.CharField(max_length=200, blank=True, default="", help_text="ISO 4217, comma-separated.")
    min_amount = models.BigIntegerField(null=True, blank=True, help_text="Minor units, inclusive.")
    max_amount = models.BigIntegerField(null=True, blank=True, help_text="Minor units, inclusive.")
    brands = models.CharField(max_length=200, blank=True, default="", help_text=f"Any of: {', '.join(BRANDS)}.")
    bin_countries = models.CharField(max_length=200, blank=True, default="",
                                     help_text="ISO 3166 alpha-2 of the card's issuer, comma-separated.")
    method_types = models.CharField(max_length=100, blank=True, default="",
                                    help_text=f"Any of: {', '.join(METHOD_TYPES)}.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["merchant", "priority", "id"]
        indexes = [models.Index(fields=["merchant", "enabled"], name="routing_rule_merchant_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(min_amount__isnull=True) | models.Q(max_amount__isnull=True)
                | models.Q(min_amount__lte=models.F("max_amount")),
                name="routing_rule_amount_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.merchant_id} → {self.connector} (priority {self.priority}, weight {self.weight})"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.connector not in settings.PSP_CONNECTORS:
            errors["connector"] = f"Unknown connector; configured: {', '.join(sorted(settings.PSP_CONNECTORS))}."
        bad = [c for c in _codes(self.currencies) if pycountry.currencies.get(alpha_3=c) is None]
        if bad:
            errors["currencies"] = f"Not ISO 4217: {', '.join(bad)}."
        bad = [c for c in _codes(self.bin_countries) if pycountry.countries.get(alpha_2=c) is None]
        if bad:
            errors["bin_countries"] = f"Not ISO 3166 alpha-2: {', '.join(bad)}."
        bad = [b for b in _codes(self.brands) if b.lower() not in BRANDS]
        if bad:
            errors["brands"] = f"Unknown brand: {', '.join(bad)}."
        bad = [m for m in _codes(self.method_types) if m.lower() not in METHOD_TYPES]
        if bad:
            errors["method_types"] = f"Unknown method type: {', '.join(bad)}."
        for field in ("min_amount", "max_amount"):
            if getattr(self, field) is not None and getattr(self, field) < 0:
                errors[field] = "Must not be negative."
        if self.min_amount is not None and self.max_amount is not None and self.min_amount > self.max_amount:
            errors["max_amount"] = "Must not be below the minimum."
        if errors:
            raise ValidationError(errors)
        self.currencies = ",".join(_codes(self.currencies))
        self.bin_countries = ",".join(_codes(self.bin_countries))
        self.brands = ",".join(b.lower() for b in _codes(self.brands))
        self.method_types = ",".join(m.lower() for m in _codes(self.method_types))

    def condition_sets(self) -> dict[str, frozenset[str] | None]:
        def as_set(value: str, lower: bool = False) -> frozenset[str] | None:
            codes = _codes(value)
            return frozenset(c.lower() if lower else c for c in codes) or None

        return {
            "currencies": as_set(self.currencies),
            "brands": as_set(self.brands, lower=True),
            "bin_countries": as_set(self.bin_countries),
            "method_types": as_set(self.method_types, lower=True),
        }


class BinRange(models.Model):
    """Which country issued a card, by the longest matching prefix of its BIN. Data, edited by
    operations (seeded with the sandbox cards' BINs); a card with no match has no country, and
    rules with BIN countries do not match it."""

    prefix = models.CharField(max_length=8, unique=True, help_text="The first 1–8 digits of the card number.")
    country = models.CharField(max_length=2, help_text="ISO 3166 alpha-2.")
    issuer = models.CharField(max_length=100, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["prefix"]

    def __str__(self) -> str:
        return f"{self.prefix}… → {self.country}"

    def clean(self) -> None:
        if not self.prefix.isdigit():
            raise ValidationError({"prefix": "Digits only."})
        self.country = (self.country or "").upper()
        if pycountry.countries.get(alpha_2=self.country) is None:
            raise ValidationError({"country": "Not ISO 3166 alpha-2."})
