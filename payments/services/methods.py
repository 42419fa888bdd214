"""Tokenization: a card (or IBAN) becomes a `pm_` row at once. The number is encrypted through
the secrets backend and fingerprinted with a keyed hash (never a plain hash) BEFORE the
transaction opens (the backend may be a remote Vault); the CVC never leaves memory.

What each method type needs and does is declared in `payments.method_types`; this module only
dispatches to the type's spec."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from payments.method_types import (
    MandateInput,
    MethodInput,
    PaymentMethodUnsupportedError,
    method_spec,
    method_validate,
)
from payments.models import PaymentMethod, SepaMandate
from psp_adapters.port import PaymentMethodData

__all__ = ["MethodInput", "PaymentMethodUnsupportedError", "Tokenized", "method_expired", "method_psp_data",
           "method_tokenize", "method_validate"]


@dataclass(frozen=True, slots=True)
class Tokenized:
    fields: dict
    method: MethodInput


def method_tokenize(method: MethodInput) -> Tokenized:
    """Encrypt and fingerprint outside any transaction; the row is created by the caller."""
    return Tokenized(fields=method_spec(method.type).tokenize(method), method=method)


def method_psp_data(pm: PaymentMethod, method: MethodInput | None) -> PaymentMethodData:
    """What the PSP gets for one call: the in-memory input when we have it (with CVC), else the
    stored method decrypted (no CVC: a saved card or a later confirm), with its mandate."""
    spec = method_spec(pm.type)
    mandate = None
    if spec.mandate:
        row = SepaMandate.objects.filter(payment_method=pm).first()
        if row is not None:
            mandate = MandateInput(reference=row.reference, signed_at=row.signed_at)
    return spec.psp_data(pm, method, mandate)


def method_expired(pm: PaymentMethod) -> bool:
    return method_spec(pm.type).expired(pm, timezone.now().date())
