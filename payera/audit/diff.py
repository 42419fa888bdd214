"""auditlog's `model_instance_diff` without its per-call overhead, for the entries written on every
payment (the payment method's and the payment's create entries, the payment's update entry).

auditlog rebuilds the model's field set and filters it on every call, and works out each field's
value on both sides even where nothing changed. This version returns exactly what auditlog's does
(the same fields, the same old and new strings, the same masking) with three shortcuts, each
equal by construction:
- the model's filtered field list is built once per model and kind (create: every tracked field
  from `_meta.get_fields()`; update: `_meta.fields`), in the same set order auditlog iterates;
- on a create, the old side of every field is `get_field_value(None, field)`, which is always
  `smart_str(None)` (auditlog's own fallback for a missing instance);
- on an update, a field whose raw value is the same on both sides — the same object, or equal
  values of the same immutable type (str, int, bool, None, datetime, date, UUID) — gives the same
  string on both sides, so it is not in the diff and its value is not worked out;
- a plain field (auditlog's last branch, `smart_str(getattr(obj, name))`) holding a str, int, bool
  or None: its string at once, read from the instance (a str as it is, the others' `str()`).
Anything else (JSON changes, `update_fields`, instances of two models, foreign keys rendered as
strings) goes to auditlog's own function. tests/audit/test_fast_diff.py checks both agree.
"""

from __future__ import annotations

import datetime as dt
import uuid

from auditlog import diff as _auditlog_diff
from django.conf import settings
from django.db.models import DateTimeField, ForeignKey, JSONField, Model
from django.db.models.query_utils import DeferredAttribute
from django.utils.encoding import smart_str

_original = _auditlog_diff.model_instance_diff
_SAME_WHEN_EQUAL = frozenset({str, int, bool, type(None), dt.datetime, dt.date, uuid.UUID})
_MISSING = object()
_STR_OF = frozenset({int, bool, type(None)})  # smart_str(v) is str(v)
_fields_cache: dict[tuple, tuple] = {}


def _fields(model, create: bool, model_fields: dict) -> tuple:
    key = (model, create, tuple(model_fields["include_fields"]), tuple(model_fields["exclude_fields"]),
           tuple(model_fields["mask_fields"]), model_fields["mask_callable"])
    found = _fields_cache.get(key)
    if found is None:
        # the same set auditlog builds, filtered as auditlog filters it (model_instance_diff)
        fields = set([f for f in model._meta.get_fields() if _auditlog_diff.track_field(f)] if create
                     else model._meta.fields)
        if (model_fields["include_fields"] or model_fields["exclude_fields"]) and fields:
            filtered = fields
            if model_fields["include_fields"]:
                filtered = [f for f in fields if f.name in model_fields["include_fields"]]
            if model_fields["exclude_fields"]:
                filtered = [f for f in filtered if f.name not in model_fields["exclude_fields"]]
            fields = filtered
        found = _fields_cache[key] = tuple(
            (f, f.attname if getattr(f, "concrete", False) else None, f.name in model_fields["mask_fields"],
             _plain(f))
            for f in fields)
    return found


def _plain(field) -> bool:
    """A field whose value auditlog renders as `smart_str(getattr(obj, field.name))` (its last
    branch: not a datetime, JSON or related field), read through Django's plain descriptor."""
    return (getattr(field, "concrete", False) and field.attname == field.name
            and getattr(field, "descriptor_class", None) is DeferredAttribute
            and not isinstance(field, DateTimeField | JSONField) and not (field.one_to_one or field.many_to_one))


def _value(obj, field, attname: str, plain: bool, get_field_value):
    """auditlog's `get_field_value(obj, field)`; for a plain field holding a str, int, bool or None
    its `smart_str` at once (a str as it is, the others' str())."""
    if plain:
        value = obj.__dict__.get(attname, _MISSING)
        kind = type(value)
        if kind is str:
            return value
        if kind in _STR_OF:
            return str(value)
    return get_field_value(obj, field, False)


def model_instance_diff(old: Model | None, new: Model | None, fields_to_check=None, use_json_for_changes=False):
    """auditlog.diff.model_instance_diff, the same result (see the module)."""
    if (use_json_for_changes or fields_to_check or new is None or not isinstance(new, Model)
            or (old is not None and type(old) is not type(new))):
        return _original(old, new, fields_to_check=fields_to_check, use_json_for_changes=use_json_for_changes)
    from auditlog.registry import auditlog

    model = type(new)
    model_fields = auditlog.get_model_fields(new._meta.model)
    get_field_value = _auditlog_diff.get_field_value
    fk_as_string = settings.AUDITLOG_USE_FK_STRING_REPRESENTATION
    diff = {}
    if old is None:
        none = smart_str(None)
        for field, attname, masked, plain in _fields(model, True, model_fields):
            new_value = _value(new, field, attname, plain, get_field_value)
            if none != new_value:
                diff[field.name] = _pair(none, new_value, masked, model_fields)
        return diff or None
    old_values, new_values = old.__dict__, new.__dict__
    for field, attname, masked, plain in _fields(model, False, model_fields):
        if attname is not None and not (fk_as_string and isinstance(field, ForeignKey)):
            a, b = old_values.get(attname, _MISSING), new_values.get(attname, _MISSING)
            if a is not _MISSING and b is not _MISSING and (
                    a is b or (type(a) is type(b) and type(a) in _SAME_WHEN_EQUAL and a == b)):
                continue
        old_value = _value(old, field, attname, plain, get_field_value)
        new_value = _value(new, field, attname, plain, get_field_value)
        if old_value != new_value:
            diff[field.name] = _pair(old_value, new_value, masked, model_fields)
    return diff or None


def _pair(old_value, new_value, masked: bool, model_fields: dict) -> tuple[str, str]:
    if masked:
        mask = _auditlog_diff.get_mask_function(model_fields.get("mask_callable"))
        return mask(smart_str(old_value)), mask(smart_str(new_value))
    return (old_value if type(old_value) is str else smart_str(old_value),
            new_value if type(new_value) is str else smart_str(new_value))


def install() -> None:
    """auditlog's receivers call this diff (they import the function by name)."""
    from auditlog import receivers

    receivers.model_instance_diff = model_instance_diff
