"""Tokenization: a card (or IBAN) becomes a `pm_` row at once. The number is encrypted through
the secrets backend and fingerprinted with a keyed hash (never a plain hash) BEFORE the
transaction opens (the backend may be a remote Vault); the CVC never leaves memory.

What each method type needs and does is declared in `payments.method_types`; this module only
dispatches to the type's spec."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.utils import timezone

from payera.core.errors import InvalidRequestError
from payments.method_types import (
    PAN_KEY,
    MandateInput,
    MethodInput,
    PaymentMethodUnsupportedError,
    method_spec,
    method_validate,
)
from payments.models import PaymentMethod, SepaMandate
from psp_adapters.port import PaymentMethodData, StoredCardData

__all__ = ["PAN_KEY", "MethodInput", "PaymentMethodUnsupportedError", "Tokenized", "method_expired",
           "method_psp_data", "method_tokenize", "method_validate"]


@dataclass(frozen=True, slots=True)
class Tokenized:
    fields: dict
    method: MethodInput


def method_tokenize(method: MethodInput, *, own_key: bool = False) -> Tokenized:
    """Encrypt and fingerprint outside any transaction; the row is created by the caller.
    `own_key`: a card saved for later gets a key of its own in the secrets backend, so detaching
    it can crypto-shred exactly that card (`method_shred`)."""
    key = f"pan-{uuid.uuid4().hex}" if own_key else ""
    return Tokenized(fields=method_spec(method.type).tokenize(method, own_key=key), method=method)


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


# --- merchant-initiated (off-session) charges of a saved method ----------------------------
@dataclass(frozen=True, slots=True)
class OffSessionCredential:
    """What one connector gets for an MIT: the method data and the first CIT's network
    transaction id (schemes link the MIT to it)."""

    payment_method: PaymentMethodData
    network_transaction_id: str | None


class PaymentMethodNotReusableError(InvalidRequestError):
    code = "payment_method_not_reusable"


OffSessionPlanner = Callable[[PaymentMethod, list[str], dict], list[str]]
OffSessionData = Callable[[PaymentMethod, str, dict], OffSessionCredential]


def _card_plan(pm: PaymentMethod, plan: list[str], creds: dict) -> list[str]:
    """Connectors holding a PSP token first (routing order kept), then the others, reached with
    the card and the network transaction id of the first CIT; none without any credential."""
    ntid = any(c.network_transaction_id for c in creds.values())
    with_token = [c for c in plan if c in creds and creds[c].psp_token]
    others = [c for c in plan if c not in with_token and (ntid or c in creds)]
    return with_token + others


def _card_data(pm: PaymentMethod, connector: str, creds: dict) -> OffSessionCredential:
    cred = creds.get(connector)
    ntid = (cred.network_transaction_id if cred else "") or next(
        (c.network_transaction_id for c in creds.values() if c.network_transaction_id), None
    )
    if cred is not None and cred.psp_token:
        return OffSessionCredential(StoredCardData(token=cred.psp_token), ntid or None)
    return OffSessionCredential(method_psp_data(pm, None), ntid or None)


def _default_plan(pm: PaymentMethod, plan: list[str], creds: dict) -> list[str]:
    return plan


def _default_data(pm: PaymentMethod, connector: str, creds: dict) -> OffSessionCredential:
    return OffSessionCredential(method_psp_data(pm, None), None)


# One entry per payment-method type: how MITs are routed and what each connector gets. A new
# reusable type registers its pair here (a saved SEPA mandate uses the defaults: every routed
# connector, the stored IBAN with its mandate reference); the off-session payment
# service, and the subscriptions built on it, need nothing else.
OFF_SESSION_HANDLERS: dict[str, tuple[OffSessionPlanner, OffSessionData]] = {
    "card": (_card_plan, _card_data),
}


def method_off_session_plan(pm: PaymentMethod, plan: list[str]) -> list[str]:
    creds = {c.connector: c for c in pm.credentials.all()}
    planner, _ = OFF_SESSION_HANDLERS.get(pm.type, (_default_plan, _default_data))
    return planner(pm, plan, creds)


def method_off_session_data(pm: PaymentMethod, connector: str) -> OffSessionCredential:
    creds = {c.connector: c for c in pm.credentials.all()}
    _, data = OFF_SESSION_HANDLERS.get(pm.type, (_default_plan, _default_data))
    return data(pm, connector, creds)
