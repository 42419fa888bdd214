"""The audit trail: append-only records of who changed what, and of authentication events.

Records are written once and never changed or deleted: the models refuse `save()` of an existing
row and `delete()`, their querysets refuse `update()`/`delete()`, the admin is read-only, and a
database trigger refuses UPDATE and DELETE whoever connects (migration 0002). The only
permission they have is `view`: reading them is granted, nothing else can be.
"""

from __future__ import annotations

from auditlog.models import AbstractLogEntry, LogEntryManager
from django.conf import settings
from django.db import models


class AuditRecordImmutableError(Exception):
    """Raised on any attempt to change or delete an audit record."""


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditRecordImmutableError("audit records can not be changed")

    def delete(self):
        raise AuditRecordImmutableError("audit records can not be deleted")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AuditRecordImmutableError("audit records can not be changed")

    def update_or_create(self, *args, **kwargs):
        raise AuditRecordImmutableError("audit records can not be changed")


class AppendOnlyMixin:
    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditRecordImmutableError("audit records can not be changed")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditRecordImmutableError("audit records can not be deleted")


class AuditLogEntryManager(LogEntryManager.from_queryset(AppendOnlyQuerySet)):
    pass


class AuditLogEntry(AppendOnlyMixin, AbstractLogEntry):
    """django-auditlog's entry (AUDITLOG_LOGENTRY_MODEL) plus who acted through the API and in
    which request. `actor` is the staff user; `api_key_id`/`merchant_id` the API key and its
    merchant; `object_merchant_id` the merchant the changed object belongs to (for scoping)."""

    # PROTECT instead of auditlog's SET_NULL/CASCADE: removing a user or a content type must
    # never rewrite or remove history (deactivate staff accounts instead of deleting them).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    content_type = models.ForeignKey("contenttypes.ContentType", on_delete=models.PROTECT, related_name="+")
    api_key_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    merchant_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    object_merchant_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    request_id = models.CharField(max_length=64, blank=True, default="", db_index=True)

    objects = AuditLogEntryManager()

    class Meta(AbstractLogEntry.Meta):
        abstract = False
        verbose_name = "audit record"
        verbose_name_plural = "audit records"
        default_permissions = ("view",)

    @property
    def actor_label(self) -> str:
        if self.actor_id:
            return f"staff:{self.actor_email or self.actor_id}"
        if self.api_key_id:
            return f"api_key:{self.api_key_id} (merchant {self.merchant_id})"
        return "system"


class SecurityEvent(AppendOnlyMixin, models.Model):
    """Authentication events: failed API keys, failed and successful staff sign-ins, sign-outs."""

    class Event(models.TextChoices):
        AUTH_FAILURE = "auth_failure", "authentication failure"
        LOGIN = "login", "staff sign-in"
        LOGOUT = "logout", "staff sign-out"

    event = models.CharField(max_length=32, choices=Event.choices, db_index=True)
    kind = models.CharField(max_length=32, db_index=True)  # api_key | staff_login
    identifier = models.CharField(max_length=150, blank=True, default="", db_index=True)
    reason = models.CharField(max_length=100, blank=True, default="")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = models.Manager.from_queryset(AppendOnlyQuerySet)()

    class Meta:
        ordering = ["-created_at"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.event} {self.kind} {self.identifier}"
