"""Reads of the payments app. Every selector takes `merchant`: other merchants' ids are 404."""

from __future__ import annotations

from django.db.models import QuerySet

from payera.core.errors import NotFoundError
from payera.merchants.models import Merchant
from payera.merchants.scoping import owned_get
from payments.models import Customer


class CustomerNotFoundError(NotFoundError):
    default_message = "No such customer."


def customer_get(*, merchant: Merchant, customer_id: str) -> Customer:
    return owned_get(Customer.objects.all(), merchant=merchant, pk=customer_id, error=CustomerNotFoundError)


def customer_list(*, merchant: Merchant) -> QuerySet[Customer]:
    return Customer.objects.for_merchant(merchant)
