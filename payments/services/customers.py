"""Customers: who pays, to attach saved payment methods and subscriptions to.

`validate_metadata` is the contract's metadata rule (string keys and values, at most 50 keys); the
payment services reuse it.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import transaction

from payera.core.errors import InvalidRequestError
from payera.idempotency.services import idempotency_resource_record
from payera.merchants.models import Merchant
from payments.models import Customer


@transaction.atomic(durable=True)
def customer_create(
    *, merchant: Merchant, email: str | None = None, name: str | None = None, metadata: dict | None = None
) -> Customer:
    if email:
        try:
            validate_email(email)
        except DjangoValidationError:
            raise InvalidRequestError("email: Enter a valid email address.", param="email") from None
    customer = Customer(merchant=merchant, email=email or "", name=name or "", metadata=validate_metadata(metadata))
    customer.save(force_insert=True)
    idempotency_resource_record(resource=customer.id)  # a retry after a crash answers this customer
    return customer

MAX_KEYS = 50
MAX_KEY_LENGTH = 40
MAX_VALUE_LENGTH = 500


def validate_metadata(metadata: object) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidRequestError("metadata must be an object of string keys and values.", param="metadata")
    if len(metadata) > MAX_KEYS:
        raise InvalidRequestError(f"metadata can have at most {MAX_KEYS} keys.", param="metadata")
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
            raise InvalidRequestError(
                f"metadata keys must be strings of 1-{MAX_KEY_LENGTH} characters.", param="metadata"
            )
        if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH:
            raise InvalidRequestError(
                f"metadata[{key}] must be a string of at most {MAX_VALUE_LENGTH} characters.",
                param=f"metadata[{key}]",
            )
    return dict(metadata)
