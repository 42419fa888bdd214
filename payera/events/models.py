"""Outbox events, merchant webhook endpoints, deliveries and their attempt log.

`merchant_id` is a plain indexed string (`mer_…`), not a foreign key: the events app is a
platform app and must not depend on the merchants app's tables.
"""

from __future__ import annotations

import fnmatch

from django.db import models
from django.db.models import Q

from payera.core.db import created_timestamp
from payera.core.horizon import CommitStampField
from payera.core.ids import IdField

MERCHANT_ID_LENGTH = 40


class Event(models.Model):
    id = IdField(prefix="evt")
    # No index of its own: events_evt_merchant_recent leads with it (migration 0002).
    merchant_id = models.CharField(max_length=MERCHANT_ID_LENGTH)
    type = models.CharField(max_length=100)
    api_version = models.CharField(max_length=20)
    data = models.JSONField(help_text='{"object": {...}} as sent to merchants.')
    created_at = models.DateTimeField(db_index=True)
    relayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["merchant_id", "-created_at", "-id"], name="events_evt_merchant_recent"),
            # The relay sweep scans only what was never fanned out.
            models.Index(fields=["created_at"], name="events_evt_unrelayed", condition=Q(relayed_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.type}"

    def to_payload(self) -> dict:
        """The event object of the contract, as POSTed to endpoints and answered by the API."""
        return {
            "id": self.id,
            "object": "event",
            "type": self.type,
            "api_version": self.api_version,
            "created": created_timestamp(self.created_at),
            "data": self.data,
        }


class EndpointStatus(models.TextChoices):
    ENABLED = "enabled"
    DISABLED = "disabled"


class WebhookEndpoint(models.Model):
    id = IdField(prefix="we")
    merchant_id = models.CharField(max_length=MERCHANT_ID_LENGTH, db_index=True)
    url = models.CharField(max_length=2048)
    description = models.CharField(max_length=500, blank=True, default="")
    enabled_events = models.JSONField(default=list)
    # The signing secret, encrypted through the secrets facade; never stored in clear.
    secret_ciphertext = models.TextField()
    # During a roll the old secret keeps signing until it expires (two v1= values).
    previous_secret_ciphertext = models.TextField(blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=EndpointStatus.choices, default=EndpointStatus.ENABLED)
    disabled_reason = models.CharField(max_length=200, blank=True, default="")
    # Failure streak: consecutive failed attempts since the last success, and when it began.
    consecutive_failures = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = CommitStampField()  # stamped in its INSERT: the polled list's order (payera.core.horizon)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["merchant_id", "-created_at", "-id"], name="events_we_merchant_recent")]

    def __str__(self) -> str:
        return f"{self.id} {self.url}"

    def listens_to(self, event_type: str) -> bool:
        return any(pattern == "*" or fnmatch.fnmatchcase(event_type, pattern) for pattern in self.enabled_events)

    def to_object(self) -> dict:
        """The webhook_endpoint object (without its secret)."""
        return {
            "id": self.id,
            "object": "webhook_endpoint",
            "url": self.url,
            "description": self.description,
            "enabled_events": list(self.enabled_events),
            "status": self.status,
            "created": created_timestamp(self.created_at),
        }


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # not yet attempted (or replayed)
    FAILED = "failed"  # last attempt failed, another is scheduled at next_attempt_at
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # gave up after the retry horizon: dead letter, replayable

    @classmethod
    def open(cls) -> tuple[str, str]:
        return (cls.PENDING, cls.FAILED)


class WebhookDelivery(models.Model):
    id = IdField(prefix="whd")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    merchant_id = models.CharField(max_length=MERCHANT_ID_LENGTH, db_index=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    # When the next attempt is due; null once final. While an attempt is in flight it is pushed
    # to the lease end, so a crashed worker's delivery is picked up again by the sweep.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Set while an attempt is in flight: counts against the endpoint's concurrency limit.
    lease_until = models.DateTimeField(null=True, blank=True)
    # Start of the retry horizon (creation, or the last replay).
    window_started_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    completed_at = models.DateTimeField(null=True, blank=True)
    replay_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="events_delivery_one_per_event_endpoint"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="events_delivery_due",
                condition=Q(status__in=["pending", "failed"]),
            ),
            models.Index(fields=["endpoint", "lease_until"], name="events_delivery_inflight"),
            models.Index(fields=["endpoint", "status"], name="events_delivery_ep_status"),
        ]
        permissions = [("replay_delivery", "Can replay webhook deliveries")]

    def __str__(self) -> str:
        return f"{self.id} {self.status}"


class DeliveryAttempt(models.Model):
    RESPONSE_BODY_LIMIT = 2048

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    succeeded = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    response_body = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["delivery", "number", "id"]
        indexes = [models.Index(fields=["delivery", "number"], name="events_attempt_delivery")]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number} {self.status_code or self.error}"
