"""Merchant scoping as a rule of the admin site, not of each ModelAdmin.

Every admin registered on the back-office site for a model that belongs to a merchant is limited
to the staff member's merchants (`payera.staff.access`), lists, pages and actions alike: when its
class does not already mix in `MerchantScopedAdminMixin`, the site registers a subclass that does.
So a domain app's admin is scoped the day it is registered, even if its author forgot.

Which field names the merchant, in this order:
1. the admin's own `merchant_field` (it uses the mixin: left as it is);
2. `MERCHANT_FIELD_OVERRIDES` below (models whose `merchant_id` means something else, or whose
   admin scopes itself);
3. the primary key of `settings.STAFF_MERCHANT_MODEL` itself;
4. a `merchant` foreign key or a concrete `merchant_id` field.
Other models are not merchant-owned and are left alone.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from payera.staff.admin import MerchantScopedAdminMixin

# label_lower -> field, or None: "not wrapped, its admin scopes itself". The audit record's
# `merchant_id` is the acting API key's merchant; its admin filters on `object_merchant_id` (the
# merchant whose object changed) and keeps records of no merchant (staff changes) visible to
# those who see every merchant, which the mixin's object check would refuse.
MERCHANT_FIELD_OVERRIDES: dict[str, str | None] = {"audit.auditlogentry": None}


def merchant_field_for(model: type[models.Model]) -> str | None:
    label = model._meta.label_lower
    if label in MERCHANT_FIELD_OVERRIDES:
        return MERCHANT_FIELD_OVERRIDES[label]
    if label == settings.STAFF_MERCHANT_MODEL.lower():
        return "pk"
    names = {field.name: field for field in model._meta.concrete_fields}
    merchant = names.get("merchant")
    if isinstance(merchant, models.ForeignKey):
        return merchant.attname
    if "merchant_id" in names:
        return "merchant_id"
    return None


def scoped_admin_class(model: type[models.Model], admin_class: type) -> type:
    """`admin_class`, or a subclass of it limited to the user's merchants when `model` has one."""
    if issubclass(admin_class, MerchantScopedAdminMixin):
        return admin_class
    field = merchant_field_for(model)
    if field is None:
        return admin_class
    return type(
        admin_class.__name__,
        (MerchantScopedAdminMixin, admin_class),
        {"merchant_field": field, "__module__": admin_class.__module__, "__doc__": admin_class.__doc__},
    )
