"""Tokenization: a card (or IBAN) becomes a `pm_` row at once. The number is encrypted through
the secrets backend and fingerprinted with a keyed hash (never a plain hash) BEFORE the
transaction opens (the backend may be a remote Vault); the CVC never leaves memory.

What each method type needs and does is declared in `payments.method_types`; this module only
dispatches to the type's spec."""

from __future__ import annotations

import logging
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
from payments.models import MandateStatus, PaymentMethod, SepaMandate
from psp_adapters.port import PaymentMethodData, StoredCardData

logger = logging.getLogger("payera.payments")

__all__ = ["PAN_KEY", "MandateInactiveError", "MethodInput", "PaymentMethodUnsupportedError", "Tokenized",
           "mandate_end", "mandate_end_by_code", "method_expired", "method_mandate", "method_psp_data",
           "method_tokenize", "method_validate"]


class MandateInactiveError(InvalidRequestError):
    code = "mandate_inactive"
    default_message = "The payment method has no active mandate."


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


def method_mandate(pm: PaymentMethod) -> MandateInput | None:
    """The one mandate check before a stored method is debited (payment create, a later confirm,
    an idempotent replay, off-session and subscription charges, and `method_psp_data` itself):
    for a type that records a mandate (SEPA), its `active` mandate, else 400 `mandate_inactive`
    (revoked, or ended by a return such as MD01/AC04: `mandate_end_by_return`); None for a type
    without mandates. A debit is never sent under an inactive mandate."""
    if not method_spec(pm.type).mandate:
        return None
    row = SepaMandate.objects.filter(payment_method_id=pm.pk).only(
        "reference", "signed_at", "status", "inactive_reason").first()
    if row is None or row.status != MandateStatus.ACTIVE:
        why = f" ({row.inactive_reason})" if row is not None and row.inactive_reason else ""
        raise MandateInactiveError(f"The SEPA mandate of {pm.pk} is no longer active{why}: it cannot be debited.",
                                   param="payment_method")
    return MandateInput(reference=row.reference, signed_at=row.signed_at)


def mandate_end(*, pm: PaymentMethod, reason: str) -> bool:
    """End the method's mandate, if it has an active one: `inactive` with `reason`, in the
    caller's transaction (audited), and the event `payment_method.mandate_inactive` (the payment
    method object, its `sepa_debit.mandate_status` and reason) in the same transaction; later
    debits are refused `mandate_inactive` (`method_mandate`). Returns whether this call ended it
    (an ended mandate stays ended: a repeat changes and emits nothing)."""
    from payera.events.services import event_record
    from payments.serializers_recurring import render_payment_method

    if not method_spec(pm.type).mandate:
        return False
    row = SepaMandate.objects.select_for_update().filter(payment_method_id=pm.pk, status=MandateStatus.ACTIVE).first()
    if row is None:
        return False
    row.status = MandateStatus.INACTIVE
    row.inactive_reason = reason[:200]
    row.inactive_at = timezone.now()
    row.save(update_fields=["status", "inactive_reason", "inactive_at"])
    logger.warning("mandate %s of %s is inactive: %s", row.id, pm.pk, row.inactive_reason)
    event_record(merchant_id=pm.merchant_id, type="payment_method.mandate_inactive", data=render_payment_method(pm))
    return True


def mandate_end_by_code(*, pm: PaymentMethod, code: str, what: str) -> bool:
    """A SEPA return or reject whose reason code ends the mandate (`MethodSpec.mandate_ending_codes`:
    MD01, AC04, AC06, MD07) ends the method's mandate (`mandate_end`), in the caller's transaction
    (the one recording the return or the refused debit). Any other code (MD06, AM04, …) leaves it
    as it is. Returns whether this call ended it."""
    spec = method_spec(pm.type)
    if not spec.mandate or (code or "").upper() not in spec.mandate_ending_codes:
        return False
    return mandate_end(pm=pm, reason=f"{what}: {code.upper()}")


def method_psp_data(pm: PaymentMethod, method: MethodInput | None) -> PaymentMethodData:
    """What the PSP gets for one call: the in-memory input when we have it (with CVC), else the
    stored method decrypted (no CVC: a saved card or a later confirm), with its active mandate
    (`method_mandate`: an inactive one raises `MandateInactiveError`, it is never sent)."""
    return method_spec(pm.type).psp_data(pm, method, method_mandate(pm))


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
