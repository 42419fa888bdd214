"""Object-level access for staff (django-guardian): a staff member can be limited to merchants.

Rule, fail closed: an active staff user sees and acts on a merchant if they are a superuser,
hold `staff.access_all_merchants` (the admin role does), or were granted that merchant (the
object permission `view_<merchant model>` on it, to them or to one of their groups). No grant and
no global permission means no merchant at all — never "no limit".

Admin list and detail pages filter with `staff_filter_merchants`; actions check
`staff_can_access_merchant` with the same rule, so a URL typed by hand gets no further.
The merchant model is `settings.STAFF_MERCHANT_MODEL` ("merchants.Merchant"), resolved lazily.
"""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_permission_codename
from django.contrib.contenttypes.models import ContentType
from django.db import models
from guardian.shortcuts import assign_perm, remove_perm
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model

ACCESS_ALL_MERCHANTS = "staff.access_all_merchants"


def merchant_model() -> type[models.Model]:
    return apps.get_model(settings.STAFF_MERCHANT_MODEL)


def _object_codename(model: type[models.Model]) -> str:
    return get_permission_codename("view", model._meta)


def _is_staff(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


# --- generic: any model instance --------------------------------------------------------------
def object_access_grant(*, user_or_group, obj: models.Model, perm: str | None = None) -> None:
    """Grant an object permission (default: `view_<model>`) on one instance (guardian)."""
    perm = perm or _object_codename(type(obj))
    assign_perm(f"{obj._meta.app_label}.{perm}", user_or_group, obj)


def object_access_revoke(*, user_or_group, obj: models.Model, perm: str | None = None) -> None:
    perm = perm or _object_codename(type(obj))
    remove_perm(f"{obj._meta.app_label}.{perm}", user_or_group, obj)


def object_ids_granted(user, model: type[models.Model], *, perm: str | None = None) -> set[str]:
    """Primary keys (as strings) of `model` instances granted to `user` directly or via groups."""
    codename = perm or _object_codename(model)
    content_type = ContentType.objects.get_for_model(model)
    direct = get_user_obj_perms_model().objects.filter(
        user=user, permission__content_type=content_type, permission__codename=codename
    )
    via_groups = get_group_obj_perms_model().objects.filter(
        group__user=user, permission__content_type=content_type, permission__codename=codename
    )
    return set(direct.values_list("object_pk", flat=True)) | set(via_groups.values_list("object_pk", flat=True))


# --- merchants ----------------------------------------------------------------------------------
def staff_has_all_merchants(user) -> bool:
    return _is_staff(user) and (user.is_superuser or user.has_perm(ACCESS_ALL_MERCHANTS))


def staff_merchant_ids(user) -> set[str] | None:
    """Merchant ids the user may see; None means every merchant."""
    if staff_has_all_merchants(user):
        return None
    if not _is_staff(user):
        return set()
    try:
        model = merchant_model()
    except LookupError:  # the merchant model is not installed: nothing to grant, fail closed
        return set()
    return object_ids_granted(user, model)


def staff_can_access_merchant(user, merchant_id: str) -> bool:
    if not merchant_id:
        return False
    ids = staff_merchant_ids(user)
    return ids is None or str(merchant_id) in ids


def staff_filter_merchants(user, queryset: models.QuerySet, *, field: str = "merchant_id") -> models.QuerySet:
    """`queryset` limited to rows whose `field` is a merchant the user may see."""
    ids = staff_merchant_ids(user)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{field}__in": sorted(ids)})


def staff_grant_merchant(*, user, merchant_id: str) -> None:
    """Let `user` (or a group) see and act on one merchant. The merchant must exist."""
    object_access_grant(user_or_group=user, obj=merchant_model().objects.get(pk=merchant_id))


def staff_revoke_merchant(*, user, merchant_id: str) -> None:
    model = merchant_model()
    object_access_revoke(user_or_group=user, obj=model(pk=merchant_id))
