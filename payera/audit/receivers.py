"""Signal receivers of the audit app. They only copy context onto records; no business logic."""

from __future__ import annotations

import contextvars

from django.contrib.auth import get_user_model

from payera.audit.context import current_actor
from payera.audit.registry import merchant_id_of
from payera.core.work import work_began

# (model, pk) -> merchant id of the object auditlog is about to log (set by pre_log).
_pending_object: contextvars.ContextVar[tuple[type, str, str] | None] = contextvars.ContextVar(
    "payera_audit_object", default=None
)


def remember_object(sender, instance, action, **kwargs):  # auditlog.signals.pre_log
    _pending_object.set((type(instance), str(instance.pk), merchant_id_of(instance)))
    return None


def fill_entry(sender, instance, **kwargs):  # pre_save of AuditLogEntry
    if not instance._state.adding:
        return
    work_began()  # an audited write: the request's work has begun (payera.core.work)
    actor = current_actor()
    if actor is not None:
        if actor.user_id and instance.actor_id is None:
            instance.actor_id = actor.user_id
            email = get_user_model().objects.filter(pk=actor.user_id).values_list("email", flat=True).first()
            instance.actor_email = email or None
        instance.api_key_id = (actor.api_key_id or "")[:64]
        instance.merchant_id = (actor.merchant_id or "")[:64]
        instance.remote_addr = instance.remote_addr or actor.remote_addr
        instance.request_id = (actor.request_id or "")[:64]
        instance.cid = instance.cid or actor.request_id
    from django.contrib.contenttypes.models import ContentType

    content_type = ContentType.objects.get_for_id(instance.content_type_id)
    pending = _pending_object.get()
    if pending is not None:
        model, pk, merchant_id = pending
        if str(instance.object_pk) == pk and content_type.model_class() is model:
            instance.object_merchant_id = merchant_id
    if not instance.object_merchant_id and (content_type.app_label, content_type.model) == ("merchants", "merchant"):
        instance.object_merchant_id = str(instance.object_pk)


def staff_login_failed(sender, credentials, request=None, **kwargs):  # user_login_failed
    from payera.audit.middleware import client_ip
    from payera.audit.services import record_auth_failure

    username = ""
    if isinstance(credentials, dict):
        username = str(credentials.get(get_user_model().USERNAME_FIELD) or credentials.get("username") or "")
    record_auth_failure(
        kind="staff_login",
        identifier=username,
        reason="invalid_credentials",
        remote_addr=client_ip(request) if request is not None else None,
        request_id=getattr(request, "request_id", None),
    )


def staff_logged_in(sender, request, user, **kwargs):  # user_logged_in
    from payera.audit.middleware import client_ip
    from payera.audit.services import record_staff_login

    record_staff_login(
        user=user,
        remote_addr=client_ip(request) if request is not None else None,
        request_id=getattr(request, "request_id", None),
    )


def staff_logged_out(sender, request, user, **kwargs):  # user_logged_out
    from payera.audit.middleware import client_ip
    from payera.audit.services import record_staff_logout

    if user is None:
        return
    record_staff_logout(
        user=user,
        remote_addr=client_ip(request) if request is not None else None,
        request_id=getattr(request, "request_id", None),
    )
