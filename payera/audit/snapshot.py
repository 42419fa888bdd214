"""The audit trail's update entry without re-reading the row it is about.

django-auditlog diffs every update against a fresh `SELECT` of the old row (its pre_save
receiver). A service that has just locked the row (`SELECT … FOR UPDATE`) in the open
transaction already holds exactly what that SELECT would return: nobody else can change the row
until the commit. `audit_base_remember(instance)` right after the lock keeps a copy of it as the
base of the next diff; `log_update` (installed in place of auditlog's receiver by
payera.audit.registry) diffs against that base and then moves it to what the save writes.

The base is trusted only inside the transaction that took it: it carries the connection's
`run_on_commit` list, which Django replaces at every commit and rollback (and at the rollback of a
savepoint); any other time the receiver reads the row as auditlog does. It is trusted only while
its instance is the last one that locked or saved the row in that transaction: a save of another
instance of the same row (another lock of it, a plain read saved) leaves it behind, and the next
save of the first instance reads the row again. Every entry is still written — only the read of
the old row is saved.

`audit_changed_fields(instance)` says, from a trusted base, which columns a save would change:
the payments' precompiled save (payments.rowsql) then writes only those.
"""

from __future__ import annotations

import copy

from django.db import connections, router

_BASE = "_payera_audit_base"
_HOLDERS = "_payera_audit_holders"


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


def _holders(connection) -> dict:
    """(model, pk) -> the instance whose base is the row, for the open transaction."""
    held = connection.__dict__.get(_HOLDERS)
    if held is None or held[0] is not connection.run_on_commit:
        held = connection.__dict__[_HOLDERS] = (connection.run_on_commit, {})
    return held[1]


def audit_base_remember(instance) -> None:
    """`instance` was just read under `SELECT … FOR UPDATE` in the open transaction: its current
    values are the row's. The next update entry of it in this transaction diffs against them."""
    connection = connections[router.db_for_write(type(instance))]
    if not connection.in_atomic_block:
        return
    instance.__dict__[_BASE] = (connection.run_on_commit, _copy(instance))
    _holders(connection)[(type(instance), instance.pk)] = instance


def audit_base_of(instance):
    """The remembered row, if it is still the row (same transaction, and no other instance of the
    row locked or saved since), else None."""
    held = instance.__dict__.get(_BASE)
    if held is None:
        return None
    connection = connections[router.db_for_write(type(instance))]
    token, base = held
    if (not connection.in_atomic_block or connection.needs_rollback or connection.run_on_commit is not token
            or _holders(connection).get((type(instance), instance.pk)) is not instance):
        instance.__dict__.pop(_BASE, None)
        return None
    return base


def audit_row_saved_elsewhere(instance) -> None:
    """A save of `instance` without a trusted base: any other instance's base of the row is out of
    date from now on."""
    connection = connections[router.db_for_write(type(instance))]
    if connection.in_atomic_block:
        holders = _holders(connection)
        if holders.get((type(instance), instance.pk)) is not instance:
            holders.pop((type(instance), instance.pk), None)


def audit_changed_fields(instance) -> list[str] | None:
    """The fields of `instance` that differ from its trusted base (plus `auto_now` ones, which a
    save sets), or None without one: a save may then write only those columns."""
    base = audit_base_of(instance)
    if base is None:
        return None
    values, old = instance.__dict__, base.__dict__
    return [f.attname for f in type(instance)._meta.concrete_fields
            if not f.primary_key and (getattr(f, "auto_now", False) or values.get(f.attname) != old.get(f.attname))]


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

    base = audit_base_of(instance)
    if base is None and instance.pk is not None:
        audit_row_saved_elsewhere(instance)
    if auditlog_disabled.get(False) or (kwargs.get("raw") and settings.AUDITLOG_DISABLE_ON_RAW_SAVE):
        if base is not None:
            audit_base_saved(instance, base, kwargs.get("update_fields", None))
        return
    if instance._state.adding or instance.pk is None:
        return
    update_fields = kwargs.get("update_fields", None)
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
