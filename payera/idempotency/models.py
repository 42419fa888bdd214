"""One row per (merchant, Idempotency-Key): the claim, then the stored answer.

The row is inserted and committed before the request does any work, so a concurrent repeat
finds it (unique constraint) and never runs a second time. See docs/decisions/idempotency.md.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class IdempotencyState(models.TextChoices):
    IN_FLIGHT = "in_flight", "In flight"
    COMPLETED = "completed", "Completed"


class IdempotencyKey(models.Model):
    # No index of its own: the unique (merchant, key) leads with it, for lookups and the CASCADE
    # alike (migration 0003).
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    # sha256 of method, path and canonical body: a repeat must match it exactly.
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=2048)
    state = models.CharField(max_length=16, choices=IdempotencyState.choices, default=IdempotencyState.IN_FLIGHT)
    # Who holds an in-flight claim, and until when; a claim whose lock expired (the request
    # crashed) may be taken over by a retry, which gets a new owner token.
    owner = models.UUIDField()
    locked_until = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100, blank=True, default="")
    response_body = models.BinaryField(null=True, blank=True)
    # The body holds a secret shown once (e.g. a webhook endpoint's secret): stored encrypted
    # through the secrets backend, never in clear.
    response_encrypted = models.BooleanField(default=False)
    # The id of the object the request created (e.g. "pay_…"), written in the transaction that
    # created it: a retry that takes over a crashed claim answers that object instead of
    # creating a second one (one effect per key).
    resource = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "key"], name="idempotency_key_unique_per_merchant"),
            models.CheckConstraint(
                condition=(
                    Q(state=IdempotencyState.IN_FLIGHT, locked_until__isnull=False)
                    | Q(state=IdempotencyState.COMPLETED, response_status__isnull=False, response_body__isnull=False)
                ),
                name="idempotency_key_state_consistent",
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return f"{self.merchant_id}:{self.key} ({self.state})"
