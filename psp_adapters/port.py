"""The PSP port: the one interface every provider adapter implements, and its plain values.

Everything here is a frozen, slotted dataclass or an enum; amounts are `int` in the currency's
minor unit, currencies upper-case ISO 4217 codes. Nothing here knows Django models.

Outcomes are values, not exceptions: a decline is `AuthorizeResult(outcome=DECLINED, decline=…)`.
Only transport problems raise (see `psp_adapters.errors`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class Outcome(StrEnum):
    """What an operation ended in, from the PSP's answer (response, inquiry or webhook)."""

    APPROVED = "approved"  # authorized / captured / refunded / voided, as asked
    DECLINED = "declined"  # hard decline: stop, never try another connector
    SOFT_DECLINED = "soft_declined"  # soft or technical decline: the next connector may be tried
    REQUIRES_ACTION = "requires_action"  # the shopper must act (3-D Secure, bank page): see `action`
    PENDING = "pending"  # accepted, the outcome comes later (webhook or inquiry)


class DeclineClass(StrEnum):
    SOFT = "soft"  # issuer says "not now / not like this": another connector or a later retry may pass
    HARD = "hard"  # final for this card/account: stop
    TECHNICAL = "technical"  # the PSP or network failed to process it: another connector may pass


class DeclineCode(StrEnum):
    """Normalized decline codes: each PSP's own codes map onto these (`<psp>/codes.py`)."""

    GENERIC_DECLINE = "generic_decline"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    INCORRECT_CVC = "incorrect_cvc"
    INCORRECT_NUMBER = "incorrect_number"
    LOST_CARD = "lost_card"
    STOLEN_CARD = "stolen_card"
    FRAUDULENT = "fraudulent"
    DO_NOT_HONOR = "do_not_honor"
    CARD_NOT_SUPPORTED = "card_not_supported"
    CURRENCY_NOT_SUPPORTED = "currency_not_supported"
    AUTHENTICATION_FAILED = "authentication_failed"
    AUTHENTICATION_REQUIRED = "authentication_required"
    TRY_AGAIN_LATER = "try_again_later"
    PROCESSING_ERROR = "processing_error"
    INVALID_ACCOUNT = "invalid_account"
    OPERATION_REJECTED = "operation_rejected"  # a capture/refund/void the PSP refused


@dataclass(frozen=True, slots=True)
class Decline:
    code: DeclineCode
    decline_class: DeclineClass
    psp_code: str = ""  # the PSP's own code, kept for operations and the admin mapping table
    message: str = ""

    @property
    def may_cascade(self) -> bool:
        return self.decline_class in (DeclineClass.SOFT, DeclineClass.TECHNICAL)


class PaymentMethodType(StrEnum):
    CARD = "card"
    BANK_REDIRECT = "bank_redirect"
    SEPA_DEBIT = "sepa_debit"


@dataclass(frozen=True, slots=True)
class CardData:
    number: str = field(repr=False)
    exp_month: int
    exp_year: int
    cvc: str | None = field(default=None, repr=False)  # in memory for the one call only
    holder_name: str | None = None
    type = PaymentMethodType.CARD


@dataclass(frozen=True, slots=True)
class StoredCardData:
    """A card saved at the PSP earlier (`AuthorizeResult.payment_method_token`)."""

    token: str
    type = PaymentMethodType.CARD


@dataclass(frozen=True, slots=True)
class BankRedirectData:
    bank: str
    type = PaymentMethodType.BANK_REDIRECT


@dataclass(frozen=True, slots=True)
class SepaDebitData:
    iban: str = field(repr=False)
    account_holder_name: str
    mandate_reference: str | None = None
    mandate_signed_at: dt.datetime | None = None
    type = PaymentMethodType.SEPA_DEBIT


PaymentMethodData = CardData | StoredCardData | BankRedirectData | SepaDebitData


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    reference: str  # our attempt id (`att_…`): the PSP idempotency key and merchant reference
    amount: int
    currency: str
    payment_method: PaymentMethodData
    capture: bool = False  # capture at once (automatic capture in one call)
    off_session: bool = False  # merchant-initiated (MIT): the shopper is not present
    network_transaction_id: str | None = None  # of the first CIT, for MITs
    store_payment_method: bool = False  # ask the PSP for a reusable token (setup_future_usage)
    return_url: str | None = None  # where the PSP sends the shopper after 3-D Secure / the bank page
    description: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    shopper_ip: str | None = None
    shopper_user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class PspReference:
    """Identifies one authorization at a PSP. `psp_reference` may be unknown (after a timeout):
    adapters then look the authorization up by our `reference`."""

    reference: str
    psp_reference: str | None = None


@dataclass(frozen=True, slots=True)
class NextAction:
    redirect_url: str
    type: str = "redirect_to_url"


class PspState(StrEnum):
    """Where an authorization stands at the PSP (from an answer or an inquiry)."""

    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"  # fully or partly: see amount_captured
    VOIDED = "voided"
    DECLINED = "declined"


class OperationKind(StrEnum):
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    payment: PspReference
    reference: str  # our capture id: the PSP idempotency key
    amount: int
    currency: str
    final: bool = True  # the rest of the authorization is released


@dataclass(frozen=True, slots=True)
class VoidRequest:
    payment: PspReference
    reference: str


@dataclass(frozen=True, slots=True)
class RefundRequest:
    payment: PspReference
    reference: str  # our refund id (`re_…`)
    amount: int
    currency: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OperationResult:
    kind: OperationKind
    outcome: Outcome  # APPROVED, DECLINED or PENDING (the result comes by webhook / inquiry)
    reference: str  # ours
    psp_reference: str | None  # the PSP's id of this operation
    payment: PspReference
    amount: int
    currency: str
    decline: Decline | None = None
    # a refund the PSP completed and then took back (the shopper's bank sent it back): DECLINED
    # now, but it did succeed first (unlike a refund the PSP refused)
    returned: bool = False


@dataclass(frozen=True, slots=True)
class AuthorizeResult:
    outcome: Outcome
    payment: PspReference
    state: PspState
    amount: int  # as the PSP states it: compare with the request (a mismatch goes to review)
    currency: str
    decline: Decline | None = None
    action: NextAction | None = None
    amount_captured: int = 0
    amount_refunded: int = 0
    network_transaction_id: str | None = None
    payment_method_token: str | None = None
    operations: tuple[OperationResult, ...] = ()  # filled by inquiries


class PspEventKind(StrEnum):
    AUTHORIZATION = "authorization"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"
    DISPUTE = "dispute"


class DisputeReason(StrEnum):
    FRAUDULENT = "fraudulent"
    PRODUCT_NOT_RECEIVED = "product_not_received"
    DUPLICATE = "duplicate"
    DEBIT_RETURNED = "debit_returned"
    GENERAL = "general"


class DisputeStatus(StrEnum):
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    WON = "won"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class DisputeInfo:
    psp_dispute_id: str
    reason: DisputeReason
    status: DisputeStatus
    psp_reason: str = ""
    evidence_due_by: dt.datetime | None = None  # the PSP takes the merchant's evidence until then


@dataclass(frozen=True, slots=True)
class DisputeResult:
    """A dispute as the PSP holds it now (`PspAdapter.inquire_dispute`): the facts its dispute
    webhook carries, with the current status."""

    payment: PspReference  # the authorization it takes money back from
    dispute: DisputeInfo
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class DisputeEvidenceRequest:
    """The merchant's evidence for one dispute, sent on to the card network through the PSP."""

    payment: PspReference  # the authorization the dispute is on
    psp_dispute_id: str
    reference: str  # our dispute id (`dp_…`): the PSP idempotency key, one submission per dispute
    text: str = field(repr=False)


class EvidenceRefusal(StrEnum):
    """Why a PSP refused evidence (nothing was submitted)."""

    PAST_DUE = "evidence_past_due"  # after the dispute's evidence due date
    DISPUTE_CLOSED = "dispute_closed"  # the network decided already
    ALREADY_SUBMITTED = "evidence_already_submitted"  # another submission was made for this dispute


@dataclass(frozen=True, slots=True)
class DisputeEvidenceResult:
    """APPROVED: the PSP took the evidence (a replay of the same reference included) and holds the
    dispute as `dispute` says (under review). DECLINED: refused, see `refusal`; nothing submitted."""

    outcome: Outcome
    reference: str
    psp_reference: str | None = None  # the PSP's id of the submission
    dispute: DisputeResult | None = None
    refusal: EvidenceRefusal | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class PspEvent:
    """One verified PSP webhook, normalized. `event_id` is unique per connector (dedupe on it)."""

    event_id: str
    kind: PspEventKind
    outcome: Outcome  # of the operation; for DISPUTE: APPROVED (the dispute exists)
    payment: PspReference
    amount: int
    currency: str
    occurred_at: dt.datetime
    operation_reference: str | None = None  # our cap_/re_ id for CAPTURE/VOID/REFUND events
    operation_psp_reference: str | None = None
    decline: Decline | None = None
    action: NextAction | None = None
    amount_captured: int = 0  # AUTHORIZATION events of payments captured at once (SEPA, bank, auto)
    dispute: DisputeInfo | None = None
    network_transaction_id: str | None = None
    payment_method_token: str | None = None


class SettlementKind(StrEnum):
    CAPTURE = "capture"
    REFUND = "refund"
    CHARGEBACK = "chargeback"
    # a dispute the merchant won: the PSP pays the disputed amount back (gross positive)
    CHARGEBACK_REVERSAL = "chargeback_reversal"
    # a refund the shopper's bank sent back after it succeeded: the PSP pays it back (gross positive)
    REFUND_REVERSAL = "refund_reversal"
    FEE = "fee"
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True, slots=True)
class SettlementRow:
    """One line of a PSP settlement report, normalized.

    Signs are from the merchant's side: `gross` is positive for captures, chargeback reversals and
    refund reversals and negative for refunds and chargebacks; `fee` is what the PSP charged
    (positive = a cost); `net = gross - fee`.
    """

    kind: SettlementKind
    reference: str  # our attempt id (`att_…`)
    psp_reference: str  # the PSP's id of the authorization
    gross: int
    fee: int
    net: int
    currency: str
    settled_on: dt.date
    payout_batch_id: str
    operation_reference: str | None = None  # our cap_/re_ id when the PSP echoes it
    operation_psp_reference: str | None = None
    line_number: int = 0


@dataclass(frozen=True, slots=True)
class SettlementRowError:
    line_number: int
    message: str
    raw: str = ""


@dataclass(frozen=True, slots=True)
class SettlementReport:
    """A parsed report: the rows, the lines that could not be read, and the period it covers."""

    psp: str
    period_start: dt.date | None
    period_end: dt.date | None
    rows: tuple[SettlementRow, ...]
    errors: tuple[SettlementRowError, ...] = ()


# an amount in minor units, in SQL and in Python: this pattern and at most 18 characters (a bigint;
# PostgreSQL's regular expressions are slow with bounded repeats, so the length is apart)
SETTLEMENT_INTEGER_PATTERN = r"^[ \t]*[-+]?[0-9]+[ \t]*$"
SETTLEMENT_INTEGER_MAX_LENGTH = 18


@dataclass(frozen=True, slots=True)
class SettlementCsvLayout:
    """A settlement report the database can parse itself (PostgreSQL `COPY ... FORMAT csv`).

    The adapter checks the file as a whole (encoding, columns, preamble, trailer: a malformed file
    raises `SettlementReportError` as its parser does) and describes the record lines; the importer
    casts and checks each row in SQL by the adapter's own rules, in this order: `settled_on`,
    `kind`, the two required references, `currency`, `gross`, `fee`, `net` (the first that fails
    is the line's error). `value(field, raw)` is the adapter's rule for one field's raw text (it
    raises `ValueError` with the line's message); the importer applies it to the few distinct
    values of `kind`, `settled_on` and `currency`, and to amounts only to word an error. Amounts
    are integers in minor units (`SETTLEMENT_INTEGER_PATTERN`, `SETTLEMENT_INTEGER_MAX_LENGTH`). A
    file that is not plain CSV (quoted fields, blank lines) gets no layout: it parses in Python."""

    body: bytes  # the record lines only, as in the file
    first_line: int  # the file's line number of the body's first line
    delimiter: str
    width: int  # fields per record
    columns: Mapping[str, int]  # SettlementRow field -> the field's position in a record
    value: Callable[[str, str], Any]
    required_message: str  # a record without `reference` or `psp_reference`
    period_start: dt.date | None = None  # None: the first and last date of the rows read
    period_end: dt.date | None = None


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """What the PSP charges per settled line (the merchant agreement), to check report fees.
    Percentages in per mille (14 = 1.4 %), fixed parts in hundredths of the major unit (25 =
    0.25 EUR, scaled to the currency's ISO exponent: 0 for JPY). Rounds half up."""

    capture_per_mille: int = 0
    capture_fixed: int = 0
    refund_fixed: int = 0
    chargeback_fixed: int = 0

    def fee(self, kind: SettlementKind | str, gross: int, currency: str) -> int:
        from payera.core.money import currency_exponent

        scale: int = pow(10, currency_exponent(currency))
        kind = SettlementKind(kind)
        if kind == SettlementKind.CAPTURE:
            return (abs(gross) * self.capture_per_mille + 500) // 1000 + self.capture_fixed * scale // 100
        if kind == SettlementKind.REFUND:
            return self.refund_fixed * scale // 100
        if kind == SettlementKind.CHARGEBACK:
            return self.chargeback_fixed * scale // 100
        return 0  # chargeback and refund reversals: the fee is not returned, none is charged


@dataclass(frozen=True, slots=True)
class Capabilities:
    payment_methods: frozenset[PaymentMethodType]
    currencies: frozenset[str] | None = None  # None: every currency with an ISO 4217 minor unit
    asynchronous: bool = False  # outcomes arrive by webhook (PENDING answers)
    # a method type taken in fewer currencies than the connector's (e.g. SEPA: EUR only)
    method_currencies: Mapping[PaymentMethodType, frozenset[str]] = field(default_factory=dict)

    def currencies_for(self, method: PaymentMethodType | str) -> frozenset[str] | None:
        return self.method_currencies.get(PaymentMethodType(method), self.currencies)

    # The PSP's status inquiry reports authorizations, captures and refunds truthfully, so a
    # webhook about them is a hint that Payera confirms by asking (docs/recovery.md).
    inquiry_confirms_webhooks: bool = True
    # The PSP's dispute inquiry (`inquire_dispute`) reports a dispute's current status, amount and
    # currency truthfully, so a dispute webhook is a hint too: Payera applies what the inquiry
    # answers, never the message (docs/payments.md "Disputes"). Off only for a PSP without one.
    inquiry_confirms_disputes: bool = True

    def supports(self, method: PaymentMethodType | str, currency: str) -> bool:
        if PaymentMethodType(method) not in self.payment_methods:
            return False
        allowed = self.currencies_for(method)
        return allowed is None or currency.upper() in allowed


@runtime_checkable
class PspAdapter(Protocol):
    name: str
    capabilities: Capabilities
    fee_schedule: FeeSchedule

    def authorize(self, req: AuthorizeRequest) -> AuthorizeResult: ...

    def complete_authentication(self, ref: PspReference, *, params: Mapping[str, str] | None = None) -> AuthorizeResult:
        """After the shopper came back from 3-D Secure / the bank page: the authorization's state."""
        ...

    def capture(self, req: CaptureRequest) -> OperationResult: ...

    def void(self, req: VoidRequest) -> OperationResult: ...

    def refund(self, req: RefundRequest) -> OperationResult: ...

    def inquire(self, ref: PspReference) -> AuthorizeResult:
        """The truth at the PSP; resolves an unknown outcome. Raises PspReferenceNotFoundError when
        the PSP never received the authorization."""
        ...

    def inquire_dispute(self, ref: PspReference, psp_dispute_id: str) -> DisputeResult:
        """The truth at the PSP about one dispute of this authorization (its current status): what a
        lost or late dispute webhook would have said. Raises PspReferenceNotFoundError when the PSP
        has no such dispute on this authorization."""
        ...

    def submit_dispute_evidence(self, req: DisputeEvidenceRequest) -> DisputeEvidenceResult:
        """Send the merchant's evidence for a dispute to the PSP, idempotent on `req.reference` (a
        retry after a timeout is the first submission, never a second). A refusal is a result
        (DECLINED with `refusal`); transport problems raise as for every call (a timeout: unknown)."""
        ...

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> PspEvent:
        """Verify the signature (WebhookSignatureError if bad) and normalize the event."""
        ...

    def parse_settlement_report(self, raw: bytes) -> list[SettlementRow]: ...

    def read_settlement_report(self, raw: bytes) -> SettlementReport:
        """Like parse_settlement_report, plus the period covered and the unreadable lines."""
        ...

    def settlement_csv_layout(self, raw: bytes) -> SettlementCsvLayout | None:
        """How the database can parse this file itself, or None (it parses in Python)."""
        ...

    def fetch_settlement_report(self, day: dt.date) -> bytes:
        """Download the day's report from the PSP (for scheduled pulls)."""
        ...
