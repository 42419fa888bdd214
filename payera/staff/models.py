from django.db import models


class MerchantAccess(models.Model):
    """No table: carries the permission that lifts the per-merchant limit (payera.staff.access).
    Staff without it see and act only on merchants granted to them through django-guardian."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("access_all_merchants", "Can see and act on every merchant")]

    def __str__(self) -> str:
        return "merchant access"
