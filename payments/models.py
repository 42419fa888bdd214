"""Payments domain models. (This slice: customers; payments, attempts and the rest follow.)"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from payera.core.ids import IdField
from payera.merchants.scoping import MerchantScopedQuerySet


class CustomerQuerySet(MerchantScopedQuerySet):
    pass


class Customer(models.Model):
    id = IdField(prefix="cus")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    email = models.EmailField(max_length=254, blank=True, default="")
    name = models.CharField(max_length=256, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["merchant", "-created_at", "-id"], name="customer_merchant_created_idx")]

    def __str__(self) -> str:
        return self.id
