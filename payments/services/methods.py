"""Tokenization: a card (or IBAN) becomes a `pm_` row at once. The number is encrypted through
the secrets backend and fingerprinted with a keyed hash (never a plain hash) BEFORE the
transaction opens (the backend may be a remote Vault); the CVC never leaves memory."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.utils import timezone

from payera.core.errors import InvalidRequestError
from payera.secrets.services import decrypt, encrypt, keyed_hash
from payments.cards import CardInput, card_validate
from payments.models import PaymentMethod, PaymentMethodType
from psp_adapters.port import BankRedirectData, CardData, PaymentMethodData, SepaDebitData, StoredCardData

PAN_KEY = "payments-card-number"
IBAN_KEY = "payments-iban"
FINGERPRINT_KEY = "payments-fingerprint"


class PaymentMethodUnsupportedError(InvalidRequestError):
    code = "payment_method_unsupported"


@dataclass(frozen=True, slots=True)
class MethodInput:
    """A validated payment method as it lives in memory: the card (with CVC) or the APM data."""

    type: str
    card: CardInput | None = None
    bank: str = ""
    iban: str = ""
    account_holder_name: str = ""

    def __repr__(self) -> str:
        return f"MethodInput({self.type}, {self.card!r})"


@dataclass(frozen=True, slots=True)
class Tokenized:
    fields: dict
    method: MethodInput


def iban_valid(iban: str) -> bool:
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}", iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def method_validate(data: object, *, today) -> MethodInput:
    """Shape and rules of `payment_method_data`: 400 with `param` before any PSP call."""
    param = "payment_method_data"
    if not isinstance(data, dict):
        raise InvalidRequestError("payment_method_data must be an object.", param=param)
    kind = data.get("type")
    if kind == PaymentMethodType.CARD:
        card = data.get("card")
        if not isinstance(card, dict):
            raise InvalidRequestError("Missing required param: payment_method_data[card].", param=f"{param}[card]",
                                      code="parameter_missing")
        for name in ("number", "exp_month", "exp_year", "cvc"):
            if card.get(name) in (None, ""):
                raise InvalidRequestError(
                    f"Missing required param: payment_method_data[card][{name}].",
                    param=f"{param}[card][{name}]", code="parameter_missing",
                )
        return MethodInput(
            type=kind,
            card=card_validate(number=card.get("number"), exp_month=card.get("exp_month"),
                               exp_year=card.get("exp_year"), cvc=card.get("cvc"), today=today),
        )
    if kind == PaymentMethodType.BANK_REDIRECT:
        bank = (data.get("bank_redirect") or {}).get("bank") if isinstance(data.get("bank_redirect"), dict) else None
        if not isinstance(bank, str) or not bank:
            raise InvalidRequestError("Missing required param: payment_method_data[bank_redirect][bank].",
                                      param=f"{param}[bank_redirect][bank]", code="parameter_missing")
        return MethodInput(type=kind, bank=bank[:64])
    if kind == PaymentMethodType.SEPA_DEBIT:
        sepa = data.get("sepa_debit") if isinstance(data.get("sepa_debit"), dict) else {}
        iban = str(sepa.get("iban") or "").replace(" ", "").upper()
        holder = sepa.get("account_holder_name")
        if not iban:
            raise InvalidRequestError("Missing required param: payment_method_data[sepa_debit][iban].",
                                      param=f"{param}[sepa_debit][iban]", code="parameter_missing")
        if not iban_valid(iban):
            raise InvalidRequestError("The IBAN is invalid.", param=f"{param}[sepa_debit][iban]", code="invalid_iban")
        if not isinstance(holder, str) or not holder.strip():
            raise InvalidRequestError("Missing required param: payment_method_data[sepa_debit][account_holder_name].",
                                      param=f"{param}[sepa_debit][account_holder_name]", code="parameter_missing")
        return MethodInput(type=kind, iban=iban, account_holder_name=holder.strip()[:128])
    raise InvalidRequestError("payment_method_data[type] must be card, bank_redirect or sepa_debit.",
                              param=f"{param}[type]")


def method_tokenize(method: MethodInput, *, own_key: bool = False) -> Tokenized:
    """Encrypt and fingerprint outside any transaction; the row is created by the caller.
    `own_key`: a card saved for later gets a key of its own in the secrets backend, so detaching
    it can crypto-shred exactly that card (`method_shred`)."""
    fields: dict = {"type": method.type}
    if method.card is not None:
        card = method.card
        key = f"pan-{uuid.uuid4().hex}" if own_key else ""
        fields.update(
            card_brand=card.brand, card_bin=card.bin, card_last4=card.last4, card_exp_month=card.exp_month,
            card_exp_year=card.exp_year, pan_key=key,
            pan_ciphertext=encrypt(key=key or PAN_KEY, plaintext=card.number.encode()),
            fingerprint=keyed_hash(key=FINGERPRINT_KEY, data=card.number.encode()),
        )
    elif method.type == PaymentMethodType.SEPA_DEBIT:
        fields.update(
            iban_ciphertext=encrypt(key=IBAN_KEY, plaintext=method.iban.encode()),
            iban_last4=method.iban[-4:],
            account_holder_name=method.account_holder_name,
            fingerprint=keyed_hash(key=FINGERPRINT_KEY, data=method.iban.encode()),
        )
    else:
        fields.update(bank=method.bank)
    return Tokenized(fields=fields, method=method)


def method_psp_data(pm: PaymentMethod, method: MethodInput | None) -> PaymentMethodData:
    """What the PSP gets for one call: the in-memory input when we have it (with CVC), else the
    stored method decrypted (no CVC: a saved card or a later confirm)."""
    if method is not None and method.card is not None:
        c = method.card
        return CardData(number=c.number, exp_month=c.exp_month, exp_year=c.exp_year, cvc=c.cvc)
    if pm.type == PaymentMethodType.CARD:
        number = decrypt(key=pm.pan_key or PAN_KEY, ciphertext=pm.pan_ciphertext).decode()
        return CardData(number=number, exp_month=pm.card_exp_month or 0, exp_year=pm.card_exp_year or 0)
    if pm.type == PaymentMethodType.SEPA_DEBIT:
        iban = method.iban if method is not None else decrypt(key=IBAN_KEY, ciphertext=pm.iban_ciphertext).decode()
        return SepaDebitData(iban=iban, account_holder_name=pm.account_holder_name,
                             mandate_reference=pm.id, mandate_signed_at=pm.created_at)
    return BankRedirectData(bank=pm.bank)


def method_expired(pm: PaymentMethod) -> bool:
    today = timezone.now().date()
    if pm.type != PaymentMethodType.CARD or not pm.card_exp_year:
        return False
    return (pm.card_exp_year, pm.card_exp_month or 0) < (today.year, today.month)


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
# reusable type (e.g. saved SEPA mandates) registers its pair here; the off-session payment
# service, and the subscriptions built on it, need nothing else.
OFF_SESSION_HANDLERS: dict[str, tuple[OffSessionPlanner, OffSessionData]] = {
    PaymentMethodType.CARD: (_card_plan, _card_data),
}


def method_off_session_plan(pm: PaymentMethod, plan: list[str]) -> list[str]:
    creds = {c.connector: c for c in pm.credentials.all()}
    planner, _ = OFF_SESSION_HANDLERS.get(pm.type, (_default_plan, _default_data))
    return planner(pm, plan, creds)


def method_off_session_data(pm: PaymentMethod, connector: str) -> OffSessionCredential:
    creds = {c.connector: c for c in pm.credentials.all()}
    _, data = OFF_SESSION_HANDLERS.get(pm.type, (_default_plan, _default_data))
    return data(pm, connector, creds)
