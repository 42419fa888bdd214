"""Payment method types: each type declares what it needs and how it behaves, in one place.

A `MethodSpec` says which fields `payment_method_data[<type>]` needs and validates them (400
with `param` before any PSP call), whether the shopper is redirected (bank page), whether the
outcome is asynchronous (webhook), whether it can be refunded and reused off-session
(recurring), which currencies its scheme takes, whether a mandate is recorded, how it is shown
(masked) and what the PSP gets. The rest of the code asks the spec (`method_spec(type)`) instead
of testing `type == "card"`. A new method type is a new spec registered in `METHOD_TYPES`.

The secrets (card number, CVC, IBAN) live in `MethodInput` only in memory; their `repr` hides
them, and what is stored is encrypted through the secrets backend (`tokenize`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar

from schwifty import IBAN
from schwifty import exceptions as iban_errors

from payera.core.errors import InvalidRequestError
from payera.secrets.services import decrypt, encrypt, encrypt_and_hash, keyed_hash
from payments.cards import CardInput, card_validate
from psp_adapters.port import BankRedirectData, CardData, PaymentMethodData, SepaDebitData

PAN_KEY = "payments-card-number"
IBAN_KEY = "payments-iban"
FINGERPRINT_KEY = "payments-fingerprint"
PARAM = "payment_method_data"


class PaymentMethodUnsupportedError(InvalidRequestError):
    code = "payment_method_unsupported"


class IbanInvalidError(InvalidRequestError):
    code = "invalid_iban"


@dataclass(frozen=True, slots=True)
class MethodInput:
    """A validated payment method as it lives in memory (secrets included, never shown)."""

    type: str
    card: CardInput | None = None
    bank: str = ""
    iban: str = field(default="", repr=False)
    account_holder_name: str = ""

    def __repr__(self) -> str:
        shown = self.card if self.card is not None else (iban_mask(self.iban) if self.iban else self.bank)
        return f"MethodInput({self.type}, {shown!r})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class MandateInput:
    """What a SEPA mandate records about its signature (the shopper's acceptance)."""

    reference: str
    signed_at: dt.datetime


def iban_mask(iban: str) -> str:
    """Like a masked PAN: country and last 4 only (`DE**************3000`)."""
    if len(iban) < 8:
        return "****"
    return iban[:2] + "*" * (len(iban) - 6) + iban[-4:]


def iban_validate(raw: object, *, param: str) -> IBAN:
    """Checksum, country and the country's length and structure (schwifty); SEPA zone only. The
    error never repeats the IBAN."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidRequestError(f"Missing required param: {param}.", param=param, code="parameter_missing")
    try:
        iban = IBAN(raw)
    except iban_errors.InvalidCountryCode:
        raise IbanInvalidError("The IBAN's country code is unknown.", param=param) from None
    except iban_errors.InvalidLength:
        raise IbanInvalidError("The IBAN has the wrong length for its country.", param=param) from None
    except iban_errors.InvalidChecksumDigits:
        raise IbanInvalidError("The IBAN's check digits are wrong.", param=param) from None
    except iban_errors.SchwiftyException:
        raise IbanInvalidError("The IBAN does not have its country's format.", param=param) from None
    if not iban.in_sepa_zone:
        raise IbanInvalidError("The IBAN's country is not in the SEPA zone.", param=param, code="iban_not_sepa")
    return iban


def _section(data: dict, name: str) -> dict:
    section = data.get(name)
    if not isinstance(section, dict):
        raise InvalidRequestError(f"Missing required param: {PARAM}[{name}].", param=f"{PARAM}[{name}]",
                                  code="parameter_missing")
    return section


def _required(section: dict, type_: str, names: tuple[str, ...]) -> None:
    for name in names:
        if section.get(name) in (None, ""):
            raise InvalidRequestError(f"Missing required param: {PARAM}[{type_}][{name}].",
                                      param=f"{PARAM}[{type_}][{name}]", code="parameter_missing")


class MethodSpec:
    """What one payment method type needs and how it behaves. Subclasses fill the flags."""

    type: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]  # required under payment_method_data[<type>]
    redirect: ClassVar[bool] = False  # the shopper always leaves for a page (bank), then returns
    asynchronous: ClassVar[bool] = False  # the outcome may come days later, by webhook
    refundable: ClassVar[bool] = True
    recurring: ClassVar[bool] = False  # may be saved (setup_future_usage) and charged off-session
    holds: ClassVar[bool] = False  # authorizes now and captures later (a hold: manual capture, bookings)
    mandate: ClassVar[bool] = False  # a mandate is recorded (reference, signature date, IP, UA)
    currencies: ClassVar[frozenset[str] | None] = None  # the scheme's currencies (None: any)
    mandate_ending_codes: ClassVar[frozenset[str]] = frozenset()  # return/reject codes that end the mandate
    decline_error_code: ClassVar[str] = "payment_declined"  # last_error.code of a decline
    decline_subject: ClassVar[str] = "The payment"

    def validate(self, data: dict, *, today: dt.date) -> MethodInput:
        section = _section(data, self.type)
        _required(section, self.type, self.fields)
        return self._validate(section, today=today)

    def _validate(self, section: dict, *, today: dt.date) -> MethodInput:
        raise NotImplementedError

    def tokenize(self, method: MethodInput, *, own_key: str = "") -> dict[str, Any]:
        """The PaymentMethod row's fields (secrets encrypted). Calls the secrets backend.
        `own_key`: the secrets-backend key of its own for a saved secret (crypto-shred on detach)."""
        return {"type": self.type}

    def psp_data(self, pm: Any, method: MethodInput | None, mandate: MandateInput | None) -> PaymentMethodData:
        raise NotImplementedError

    def display(self, pm: Any) -> dict[str, Any]:
        """The masked view of a stored method for answers, events and the admin."""
        return {}

    def expired(self, pm: Any, today: dt.date) -> bool:
        return False

    def not_reusable(self, pm: Any) -> str | None:
        """Why a saved method cannot be charged off-session now, or None when it can."""
        if not self.recurring:
            return f"A {self.type} payment method cannot be charged off session."
        return None

    def describe(self, pm: Any) -> str:
        return f"{pm.id} {self.type}"


class CardMethod(MethodSpec):
    type = "card"
    fields = ("number", "exp_month", "exp_year", "cvc")
    recurring = True
    holds = True
    decline_error_code = "card_declined"
    decline_subject = "The card"

    def _validate(self, section: dict, *, today: dt.date) -> MethodInput:
        return MethodInput(type=self.type, card=card_validate(
            number=section.get("number"), exp_month=section.get("exp_month"), exp_year=section.get("exp_year"),
            cvc=section.get("cvc"), today=today))

    def tokenize(self, method: MethodInput, *, own_key: str = "") -> dict[str, Any]:
        card = method.card
        assert card is not None
        number = card.number.encode()
        ciphertext, fingerprint = encrypt_and_hash(key=own_key or PAN_KEY, plaintext=number,
                                                   hash_key=FINGERPRINT_KEY, data=number)
        return {
            "type": self.type, "card_brand": card.brand, "card_bin": card.bin, "card_last4": card.last4,
            "card_exp_month": card.exp_month, "card_exp_year": card.exp_year, "pan_key": own_key,
            "pan_ciphertext": ciphertext, "fingerprint": fingerprint,
        }

    def psp_data(self, pm: Any, method: MethodInput | None, mandate: MandateInput | None) -> PaymentMethodData:
        if method is not None and method.card is not None:  # in memory, with the CVC
            c = method.card
            return CardData(number=c.number, exp_month=c.exp_month, exp_year=c.exp_year, cvc=c.cvc)
        number = decrypt(key=pm.pan_key or PAN_KEY, ciphertext=pm.pan_ciphertext).decode()  # saved: no CVC
        return CardData(number=number, exp_month=pm.card_exp_month or 0, exp_year=pm.card_exp_year or 0)

    def display(self, pm: Any) -> dict[str, Any]:
        return {"brand": pm.card_brand, "last4": pm.card_last4, "exp_month": pm.card_exp_month,
                "exp_year": pm.card_exp_year}

    def expired(self, pm: Any, today: dt.date) -> bool:
        if not pm.card_exp_year:
            return False
        return (pm.card_exp_year, pm.card_exp_month or 0) < (today.year, today.month)

    def describe(self, pm: Any) -> str:
        return f"{pm.id} {pm.card_brand} ****{pm.card_last4}"

    def not_reusable(self, pm: Any) -> str | None:
        if not pm.credentials.exists():  # the first customer-present payment left a PSP credential
            return ("This card cannot be charged off session: save it first with a successful customer-present "
                    "payment (setup_future_usage=off_session).")
        return None


class BankRedirectMethod(MethodSpec):
    """iDEAL/Sofort-style: the shopper approves at their bank's page; one-off, never reusable."""

    type = "bank_redirect"
    fields = ("bank",)
    redirect = True
    asynchronous = True
    recurring = False
    currencies = frozenset({"EUR"})
    decline_subject = "The bank payment"

    def _validate(self, section: dict, *, today: dt.date) -> MethodInput:
        bank = section.get("bank")
        if not isinstance(bank, str) or not 1 <= len(bank) <= 64:
            raise InvalidRequestError("The bank must be a string of 1 to 64 characters.",
                                      param=f"{PARAM}[bank_redirect][bank]")
        return MethodInput(type=self.type, bank=bank)

    def tokenize(self, method: MethodInput, *, own_key: str = "") -> dict[str, Any]:
        return {"type": self.type, "bank": method.bank}

    def psp_data(self, pm: Any, method: MethodInput | None, mandate: MandateInput | None) -> PaymentMethodData:
        return BankRedirectData(bank=pm.bank)

    def display(self, pm: Any) -> dict[str, Any]:
        return {"bank": pm.bank}


class SepaDebitMethod(MethodSpec):
    """SEPA Direct Debit: the IBAN is debited under a mandate; settles days later and may be
    returned by the bank after it settled (a dispute `debit_returned`)."""

    type = "sepa_debit"
    fields = ("iban", "account_holder_name")
    asynchronous = True
    recurring = True
    mandate = True
    currencies = frozenset({"EUR"})
    decline_subject = "The direct debit"
    # ISO 20022 reason codes of a returned (or rejected) debit that end the mandate (SEPA Core
    # rulebook): MD01 no valid mandate / unauthorised transaction, AC04 account closed, AC06
    # account blocked, MD07 debtor deceased. Not MD06 (a refund the debtor may claim within 8 weeks
    # of an authorised debit: the mandate stands) nor AM04 (insufficient funds: a later debit may pass).
    mandate_ending_codes: ClassVar[frozenset[str]] = frozenset({"MD01", "AC04", "AC06", "MD07"})

    def _validate(self, section: dict, *, today: dt.date) -> MethodInput:
        iban = iban_validate(section.get("iban"), param=f"{PARAM}[sepa_debit][iban]")
        holder = section.get("account_holder_name")
        if not isinstance(holder, str) or not holder.strip() or len(holder.strip()) > 128:
            raise InvalidRequestError("account_holder_name must be a name of 1 to 128 characters.",
                                      param=f"{PARAM}[sepa_debit][account_holder_name]")
        return MethodInput(type=self.type, iban=iban.compact, account_holder_name=holder.strip())

    def tokenize(self, method: MethodInput, *, own_key: str = "") -> dict[str, Any]:
        iban = method.iban
        return {
            "type": self.type, "iban_country": iban[:2], "iban_last4": iban[-4:],
            "account_holder_name": method.account_holder_name, "pan_key": own_key,  # a saved IBAN's own key
            "iban_ciphertext": encrypt(key=own_key or IBAN_KEY, plaintext=iban.encode()),
            "fingerprint": keyed_hash(key=FINGERPRINT_KEY, data=iban.encode()),
        }

    def psp_data(self, pm: Any, method: MethodInput | None, mandate: MandateInput | None) -> PaymentMethodData:
        iban = method.iban if method is not None and method.iban else \
            decrypt(key=pm.pan_key or IBAN_KEY, ciphertext=pm.iban_ciphertext).decode()
        return SepaDebitData(iban=iban, account_holder_name=pm.account_holder_name,
                             mandate_reference=mandate.reference if mandate else None,
                             mandate_signed_at=mandate.signed_at if mandate else None)

    def display(self, pm: Any) -> dict[str, Any]:
        return {"country": pm.iban_country, "last4": pm.iban_last4}

    def describe(self, pm: Any) -> str:
        return f"{pm.id} sepa_debit {pm.iban_country}****{pm.iban_last4}"

    def not_reusable(self, pm: Any) -> str | None:
        from payments.services.methods import MandateInactiveError, method_mandate

        try:
            method_mandate(pm)  # the one mandate check
        except MandateInactiveError:
            return "This SEPA payment method has no active mandate."
        return None


METHOD_TYPES: dict[str, MethodSpec] = {spec.type: spec for spec in (CardMethod(), BankRedirectMethod(),
                                                                     SepaDebitMethod())}


def method_spec(type_: str) -> MethodSpec:
    try:
        return METHOD_TYPES[type_]
    except KeyError:
        raise InvalidRequestError(f"payment_method_data[type] must be one of {', '.join(METHOD_TYPES)}.",
                                  param=f"{PARAM}[type]") from None


def method_currency_check(type_: str, currency: str) -> None:
    """Whether the type's scheme takes `currency` (SEPA and bank redirect: EUR only): else 400
    `payment_method_unsupported` with `param` `currency`. The one check of payments (new or saved
    method) and of subscriptions (create, and a method changed by update), before any write."""
    spec = method_spec(type_)
    if spec.currencies is not None and currency not in spec.currencies:
        raise PaymentMethodUnsupportedError(
            f"{type_} payments are taken in {', '.join(sorted(spec.currencies))} only.", param="currency")


def method_validate(data: object, *, today: dt.date) -> MethodInput:
    """Shape and rules of `payment_method_data`: 400 with `param` before any PSP call."""
    if not isinstance(data, dict):
        raise InvalidRequestError("payment_method_data must be an object.", param=PARAM)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise InvalidRequestError("Missing required param: payment_method_data[type].", param=f"{PARAM}[type]",
                                  code="parameter_missing")
    return method_spec(kind).validate(data, today=today)
