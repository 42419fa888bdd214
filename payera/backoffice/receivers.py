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
