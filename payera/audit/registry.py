"""The one door other apps use to put their models in the audit trail, from `apps.py ready()`:

    from payera.audit import registry
    registry.register(ApiKey, exclude_fields=["secret_hash"])

Fields whose names say they hold a secret (password, secret, hash, token, pepper, ciphertext,
...) are never recorded, whether listed or not. `merchant_field` names the field that says which
merchant an object belongs to — a foreign key to the merchant, a text field holding its public id
(`mer_…`), or a path through the object's parent (`payment_method__merchant`) for a row that has no
merchant of its own; default: a field named `merchant` or `merchant_id` if the model has one (a
Merchant is its own). It fills `object_merchant_id`, so staff limited to some merchants see only
their merchants' records (tests/audit/test_object_merchant.py: every registered model that belongs
to a merchant says which).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from auditlog.registry import auditlog
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models
from django.db.models.signals import pre_save

from payera.audit.snapshot import log_update

# auditlog's update receiver, diffing against a row the caller has just locked when it said so
# (payera.audit.snapshot): every model registered from here on gets it
auditlog._signals[pre_save] = log_update

SENSITIVE_FIELD_RE = re.compile(
    r"(password|passwd|secret|hash|token|pepper|ciphertext|private|cvc|cvv|pan|card_number|api_key$|^key$)",
    re.IGNORECASE,
)

# model -> attribute name holding the merchant id ("pk" for the Merchant model itself), or the
# attributes leading to it through the object's parents (("payment_method", "merchant_id"))
_merchant_attr: dict[type[models.Model], str | tuple[str, ...] | None] = {}


def sensitive_fields(model: type[models.Model]) -> list[str]:
    names = []
    for field in model._meta.get_fields():
        if field.concrete or field.many_to_many:
            if SENSITIVE_FIELD_RE.search(field.name) or SENSITIVE_FIELD_RE.search(getattr(field, "attname", "")):
                names.append(field.name)
    return names


def register(
    model: type[models.Model],
    *,
    exclude_fields: Iterable[str] = (),
    include_fields: Iterable[str] | None = None,
    mask_fields: Iterable[str] = (),
    m2m_fields: Iterable[str] = (),
    merchant_field: str | None = None,
) -> type[models.Model]:
    """Record every create, update and delete of `model` (and changes of `m2m_fields`)."""
    exclude = set(exclude_fields) | set(sensitive_fields(model)) | set(reverse_relations(model))
    include = [f for f in include_fields if f not in exclude] if include_fields is not None else None
    if merchant_field is not None:
        _merchant_attr[model] = _merchant_path(model, merchant_field)
    else:
        _merchant_attr[model] = _default_merchant_attr(model)
    auditlog.register(
        model,
        include_fields=include,
        exclude_fields=sorted(exclude),
        mask_fields=list(mask_fields),
        m2m_fields=set(m2m_fields) - exclude,
    )
    return model


def reverse_relations(model: type[models.Model]) -> list[str]:
    """Relations declared on other models (a payment's `booking`, a method's mandate): not columns
    of this row, and each side is audited on its own model. auditlog would otherwise read a
    reverse one-to-one on every save of this model (one query each) to write its `str()`."""
    return [f.name for f in model._meta.get_fields() if f.auto_created and not f.concrete]


def is_registered(model: type[models.Model]) -> bool:
    return auditlog.contains(model)


def _merchant_path(model: type[models.Model], merchant_field: str) -> str | tuple[str, ...]:
    """`merchant` → its attname (`merchant_id`); `payment_method__merchant` → the attributes to walk
    from the object (`("payment_method", "merchant_id")`). Unknown fields raise FieldDoesNotExist."""
    *parents, last = merchant_field.split("__")
    walk: list[str] = []
    for name in parents:
        field = model._meta.get_field(name)
        if not (field.many_to_one or field.one_to_one) or not field.concrete:
            raise FieldDoesNotExist(f"{model.__name__}.{name} is not a foreign key of the row")
        walk.append(field.name)
        model = field.related_model
    walk.append(model._meta.get_field(last).attname)
    return walk[0] if len(walk) == 1 else tuple(walk)


def _default_merchant_attr(model: type[models.Model]) -> str | None:
    if model._meta.label_lower == "merchants.merchant":
        return "pk"
    # a foreign key `merchant`, or the merchant's public id kept as text in `merchant_id` (events)
    for name in ("merchant", "merchant_id"):
        try:
            return model._meta.get_field(name).attname
        except FieldDoesNotExist:
            continue
    return None


def merchant_attr_of(model: type[models.Model]) -> str | tuple[str, ...] | None:
    """What `merchant_id_of` reads on an object of `model` (None: it belongs to no merchant)."""
    if model not in _merchant_attr:
        _merchant_attr[model] = _default_merchant_attr(model)
    return _merchant_attr[model]


def merchant_id_of(instance: models.Model) -> str:
    """The merchant an audited object belongs to ("" if none), also for models registered with
    auditlog directly rather than through `register`."""
    attr = merchant_attr_of(type(instance))
    if not attr:
        return ""
    value: object = instance
    for name in (attr,) if isinstance(attr, str) else attr:
        try:
            value = getattr(value, name, None)  # a parent: read once if the object has not loaded it
        except ObjectDoesNotExist:
            value = None
        if value is None:
            return ""
    return str(value)
