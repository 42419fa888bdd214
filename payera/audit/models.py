"""The audit trail: append-only records of who changed what, and of authentication events.

Records are written once and never changed or deleted: the models refuse `save()` of an existing
row and `delete()`, their querysets refuse `update()`/`delete()`, the admin is read-only, and a
database trigger refuses UPDATE and DELETE whoever connects (migration 0002). The only
permission they have is `view`: reading them is granted, nothing else can be.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from auditlog.models import AbstractLogEntry, LogEntryManager
from django.conf import settings
from django.db import connections, models, router
from django.db.models.signals import pre_save

from payera.core.rowsql import new_row, rows_insert


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


_batch: contextvars.ContextVar[list | None] = contextvars.ContextVar("payera_audit_batch", default=None)


@contextmanager
def audit_entries_batched() -> Iterator[None]:
    """Inside a transaction: the entries its saves log are built as they happen (actor, object
    and merchant filled then, by the entry's pre_save receivers) and inserted in one statement at
    the end of the block, in the same transaction. Left by an exception: nothing is inserted (the
    caller's transaction is rolling back with what they recorded)."""
    outer = _batch.get()
    if outer is not None:  # already collecting: the outer block inserts them
        yield
        return
    queued: list = []
    token = _batch.set(queued)
    try:
        yield
        if queued:
            model = type(queued[0])
            if not connections[router.db_for_write(model)].in_atomic_block:
                raise RuntimeError("audit entries are batched inside the transaction they record")
            rows_insert(queued)
    finally:
        _batch.reset(token)


class AuditLogEntryManager(LogEntryManager.from_queryset(AppendOnlyQuerySet)):
    def create(self, **kwargs):
        queued = _batch.get()
        if queued is None:
            return super().create(**kwargs)
        entry = new_row(self.model, **kwargs)
        pre_save.send(sender=self.model, instance=entry, raw=False, using=self.db, update_fields=None)
        queued.append(entry)
        return entry


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
    # Without `db_index` (auditlog's object_pk and cid redeclared): Django's automatic index on a CharField
    # comes with a varchar_pattern_ops `_like` twin that only a `LIKE 'x%'` query uses, and none
    # does (the admin's search is `icontains`). The plain indexes a query needs are in Meta.indexes;
    # `cid` (auditlog's correlation id, a copy of request_id here) has none: only auditlog's CID
    # list filter reads it and our admin does not show that filter (migration 0004).
    object_pk = models.CharField(max_length=255, verbose_name="object pk")
    cid = models.CharField(max_length=255, blank=True, null=True, verbose_name="Correlation ID")  # noqa: DJ001 - auditlog's
    api_key_id = models.CharField(max_length=64, blank=True, default="")
    merchant_id = models.CharField(max_length=64, blank=True, default="")  # no query; scoping: object_merchant_id
    object_merchant_id = models.CharField(max_length=64, blank=True, default="")
    request_id = models.CharField(max_length=64, blank=True, default="")

    objects = AuditLogEntryManager()

    class Meta(AbstractLogEntry.Meta):
        abstract = False
        verbose_name = "audit record"
        verbose_name_plural = "audit records"
        default_permissions = ("view",)
        indexes = [
            # auditlog's get_for_object(s) and the payment page's audit records: content type + object_pk
            models.Index(fields=["object_pk"], name="audit_entry_object_pk_idx"),
            # staff limited to some merchants see only their merchants' records (payera.staff.access)
            models.Index(fields=["object_merchant_id"], name="audit_entry_obj_merchant_idx"),
            # what one API key, one request did (the admin's ?api_key_id= / ?request_id=): forensics
            models.Index(fields=["api_key_id"], name="audit_entry_api_key_idx"),
            models.Index(fields=["request_id"], name="audit_entry_request_idx"),
        ]

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
