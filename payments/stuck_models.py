"""Stuck items: something in a non-final state longer than its state's SLA (the sweeper in
payments/services/stuck.py re-drives it, and flags it for operations when that did not move it).
Imported at the end of payments/models.py."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class StuckItem(models.Model):
    """One object stuck in one state. Open while it stays there (unique per object and state);
    `cleared_at` is set once the object has moved on. Written only by the sweeper."""

    merchant = models.ForeignKey("merchants.Merchant", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="+")
    payment = models.ForeignKey("payments.Payment", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="stuck_items")
    object_type = models.CharField(max_length=16)  # payment | capture | refund | webhook | dispute
    object_id = models.CharField(max_length=64)
    state = models.CharField(max_length=32)
    since = models.DateTimeField()  # when the object entered the state
    sla_seconds = models.PositiveIntegerField()
    reason = models.CharField(max_length=255)  # what being stuck here means, for the on-call person
    redrives = models.PositiveIntegerField(default=0)
    last_redrive_at = models.DateTimeField(null=True, blank=True)
    last_result = models.CharField(max_length=255, blank=True, default="")
    flagged_at = models.DateTimeField(null=True, blank=True)  # re-driving did not move it
    cleared_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["object_type", "object_id", "state"], condition=Q(cleared_at__isnull=True),
                                    name="stuck_item_open_uniq"),
        ]
        indexes = [models.Index(fields=["cleared_at", "flagged_at"], name="stuck_item_open_idx")]

    def __str__(self) -> str:
        return f"{self.object_type} {self.object_id} stuck in {self.state}"
