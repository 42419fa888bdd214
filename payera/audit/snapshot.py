"""The audit trail's update entry without re-reading the row it is about.

django-auditlog diffs every update against a fresh `SELECT` of the old row (its pre_save
receiver). A service that has just locked the row (`SELECT … FOR UPDATE`) in the open
transaction already holds exactly what that SELECT would return: nobody else can change the row
until the commit. `audit_base_remember(instance)` right after the lock keeps a copy of it as the
base of the next diff; `log_update` (installed in place of auditlog's receiver by
payera.audit.registry) diffs against that base and then moves it to what the save writes.

The base is trusted only inside the transaction that took it: it carries the connection's
`run_on_commit` list, which Django replaces at every commit and rollback (and at the rollback of a
savepoint); any other time the receiver reads the row as auditlog does. Every entry is still
written — only the read of the old row is saved.
"""

from __future__ import annotations

import copy

from django.db import connections, router

_BASE = "_payera_audit_base"


def _copy(instance):
    """A copy of the row's values: mutable ones (JSON dicts and lists) copied deeply, so changing
    them in place on the instance does not change the base."""
    base = copy.copy(instance)
    base.__dict__.pop(_BASE, None)
    for field in type(instance)._meta.concrete_fields:
        value = base.__dict__.get(field.attname)
        if isinstance(value, dict | list):
            base.__dict__[field.attname] = copy.deepcopy(value)
    return base


def audit_base_remember(instance) -> None:
    """`instance` was just read under `SELECT … FOR UPDATE` in the open transaction: its current
    values are the row's. The next update entry of it in this transaction diffs against them."""
    connection = connections[router.db_for_write(type(instance))]
    if not connection.in_atomic_block:
        return
    instance.__dict__[_BASE] = (connection.run_on_commit, _copy(instance))


def audit_base_of(instance):
    """The remembered row, if it is still the row (same transaction), else None."""
    held = instance.__dict__.get(_BASE)
    if held is None:
        return None
    connection = connections[router.db_for_write(type(instance))]
    token, base = held
    if not connection.in_atomic_block or connection.needs_rollback or connection.run_on_commit is not token:
        instance.__dict__.pop(_BASE, None)
        return None
    return base


def audit_base_saved(instance, base, update_fields) -> None:
    """The save about to run writes `instance` (or only `update_fields` of it) over `base`."""
    if update_fields is None:
        saved = _copy(instance)
    else:
        saved = copy.copy(base)
        meta = type(instance)._meta
        for name in update_fields:
            attname = meta.get_field(name).attname
            value = instance.__dict__.get(attname)
            saved.__dict__[attname] = copy.deepcopy(value) if isinstance(value, dict | list) else value
    instance.__dict__[_BASE] = (instance.__dict__[_BASE][0], saved)


def log_update(sender, instance, **kwargs):
    """auditlog's `log_update` (pre_save), diffing against the remembered row when there is one."""
    from auditlog import get_logentry_model
    from auditlog.context import auditlog_disabled
    from auditlog.models import _get_manager_from_settings
    from auditlog.receivers import _create_log_entry
    from django.conf import settings

    if auditlog_disabled.get(False) or (kwargs.get("raw") and settings.AUDITLOG_DISABLE_ON_RAW_SAVE):
        return
    if instance._state.adding or instance.pk is None:
        return
    update_fields = kwargs.get("update_fields", None)
    base = audit_base_of(instance)
    old = base if base is not None else _get_manager_from_settings(sender).filter(pk=instance.pk).first()
    _create_log_entry(
        action=get_logentry_model().Action.UPDATE,
        instance=instance,
        sender=sender,
        diff_old=old,
        diff_new=instance,
        fields_to_check=update_fields,
        use_json_for_changes=settings.AUDITLOG_STORE_JSON_CHANGES,
    )
    if base is not None:
        audit_base_saved(instance, base, update_fields)
