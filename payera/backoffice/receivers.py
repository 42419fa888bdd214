"""Signal receivers: copy an event into the audit trail, nothing else."""

from __future__ import annotations

LOCKED_OUT_REASON = "locked_out"


def staff_locked_out(sender, request=None, username=None, ip_address=None, **kwargs):  # axes.user_locked_out
    """django-axes locked a staff account (10 failures): an audit record (auth_failure, locked_out)."""
    from payera.audit.middleware import client_ip
    from payera.audit.services import record_auth_failure

    record_auth_failure(
        kind="staff_login",
        identifier=username or "",
        reason=LOCKED_OUT_REASON,
        remote_addr=(client_ip(request) if request is not None else None) or ip_address,
        request_id=getattr(request, "request_id", None),
    )


UNLOCK_FIELDS = ("username", "ip_address", "failures_since_start", "attempt_time")  # never get/post data


def access_attempt_deleted(sender, instance, **kwargs):  # post_delete of axes.AccessAttempt
    """An access attempt's row went away (an admin unlocking an account early, `axes_reset`, the
    expired ones cleaned up, or a successful sign-in resetting its count): a delete record in the
    audit trail, with who did it (the bound actor) and what was lifted. The username is already
    masked by `auth.axes_username`."""
    from payera.audit.models import AuditLogEntry

    changes = {name: [str(getattr(instance, name)), "None"] for name in UNLOCK_FIELDS}
    AuditLogEntry.objects.log_create(instance, action=AuditLogEntry.Action.DELETE, changes=changes)
