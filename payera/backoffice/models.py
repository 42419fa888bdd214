"""What staff did from the back office, and why: one append-only row per action (refund, cancel,
recovery, replay, suspension, key revocation, refund approval...), with the reason they typed.

Model changes themselves are in the audit trail (django-auditlog); this is the business intent
behind them, and also the actions that were refused (e.g. a refund the PSP declined)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from payera.audit.models import AppendOnlyMixin, AppendOnlyQuerySet


class StaffActionOutcome(models.TextChoices):
    DONE = "done"
    REQUESTED = "requested"  # waits for someone else (e.g. a refund's second approval)
    REFUSED = "refused"  # the service said no; nothing changed


class StaffAction(AppendOnlyMixin, models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=64)  # e.g. payments.refund, merchants.suspend
    object_type = models.CharField(max_length=64)  # app_label.model
    object_id = models.CharField(max_length=64)
    merchant_id = models.CharField(max_length=64, blank=True, default="")
    reason = models.TextField()
    outcome = models.CharField(max_length=16, choices=StaffActionOutcome.choices)
    detail = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = models.Manager.from_queryset(AppendOnlyQuerySet)()

    class Meta:
        default_permissions = ("view",)
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="staff_action_object_idx"),
            models.Index(fields=["merchant_id", "-created_at"], name="staff_action_merchant_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_id} by {self.user_id} ({self.outcome})"
