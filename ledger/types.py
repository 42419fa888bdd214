"""Plain values other apps may import: account keys, posting lines, results.

Amounts are signed integers in the currency's minor unit: a positive amount debits the
account, a negative amount credits it. A journal's lines sum to zero per currency.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime

PLATFORM = "platform"
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class AccountType(enum.StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    REVENUE = "revenue"
    EXPENSE = "expense"


class JournalKind(enum.StrEnum):
    CAPTURE = "capture"
    REFUND = "refund"
    FEE = "fee"
    SETTLEMENT = "settlement"
    PAYOUT = "payout"
    CHARGEBACK = "chargeback"
    ESCROW = "escrow"
    REVERSAL = "reversal"
    ADJUSTMENT = "adjustment"
    TRANSFER = "transfer"
    PENDING = "pending"
    POST_PENDING = "post_pending"
    VOID_PENDING = "void_pending"


class JournalPhase(enum.IntEnum):
    """What a journal does to balances; journals never change, so neither does their phase."""

    POSTED = 0  # moves posted balances
    PENDING = 1  # reserves: moves debits_pending / credits_pending only
    POST_PENDING = 2  # releases a pending journal's reservation and posts (part of) it
    VOID_PENDING = 3  # releases a pending journal's reservation, posts nothing


class PostStatus(enum.StrEnum):
    """Per-journal outcome of a posting call, as TigerBeetle's create_transfers results."""

    CREATED = "created"
    EXISTS = "exists"  # same reference, same lines: the first journal
    REFERENCE_CONFLICT = "reference_conflict"  # same reference, different lines
    EXCEEDS_CREDITS = "exceeds_credits"  # debits_must_not_exceed_credits would break
    EXCEEDS_DEBITS = "exceeds_debits"  # credits_must_not_exceed_debits would break
    ACCOUNT_FROZEN = "account_frozen"
    NOT_PENDING = "not_pending"  # the journal to post or void is not a pending journal
    PENDING_EXPIRED = "pending_expired"
    PENDING_ALREADY_RESOLVED = "pending_already_resolved"
    EXCEEDS_PENDING_AMOUNT = "exceeds_pending_amount"  # a post moves more than reserved (or elsewhere)
    ALREADY_REVERSED = "already_reversed"
    # a balance, pending amount, version or entry balance would pass the 64-bit range (-2**63..2**63-1)
    OVERFLOW = "overflow"
    LINKED_EVENT_FAILED = "linked_event_failed"  # another journal of an atomic batch failed

    @property
    def ok(self) -> bool:
        return self in (PostStatus.CREATED, PostStatus.EXISTS)


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """How a chart account is created on first use."""

    type: AccountType
    hot: bool = False
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False


# The chart of accounts. Merchant accounts are liabilities (what we owe the merchant).
# Hot accounts (touched by nearly every posting, never limited) are spread over sub-accounts.
MERCHANT_PENDING = "merchant_pending"
MERCHANT_AVAILABLE = "merchant_available"
MERCHANT_ESCROW = "merchant_escrow"
MERCHANT_RESERVE = "merchant_reserve"
PSP_RECEIVABLE = "psp_receivable"  # code is "psp_receivable:<connector>"
FEE_REVENUE = "fee_revenue"
PSP_FEE_EXPENSE = "psp_fee_expense"
BANK_CASH = "bank_cash"
PAYOUTS_IN_TRANSIT = "payouts_in_transit"
CHARGEBACK_LOSSES = "chargeback_losses"
SUSPENSE = "suspense"
# P&L of reconciliation: a PSP receivable written off (debit: a loss) and the difference between
# what Payera expected and what the PSP reported when finance settles a line as reported (debit:
# the PSP paid less, a loss; credit: it paid more, a gain). Kept apart from PSP fee expense.
RECONCILIATION_DIFFERENCES = "reconciliation_differences"
# what Payera owes a PSP back: money the PSP paid by mistake (a report line finance settled to
# suspense and then explained as not Payera's), until it is returned. Code "psp_payable:<connector>"
PSP_PAYABLE = "psp_payable"

CHART: dict[str, AccountSpec] = {
    MERCHANT_PENDING: AccountSpec(AccountType.LIABILITY),
    MERCHANT_AVAILABLE: AccountSpec(AccountType.LIABILITY),
    MERCHANT_ESCROW: AccountSpec(AccountType.LIABILITY),
    MERCHANT_RESERVE: AccountSpec(AccountType.LIABILITY),
    PSP_RECEIVABLE: AccountSpec(AccountType.ASSET, hot=True),
    FEE_REVENUE: AccountSpec(AccountType.REVENUE, hot=True),
    PSP_FEE_EXPENSE: AccountSpec(AccountType.EXPENSE, hot=True),
    BANK_CASH: AccountSpec(AccountType.ASSET),
    PAYOUTS_IN_TRANSIT: AccountSpec(AccountType.ASSET),
    CHARGEBACK_LOSSES: AccountSpec(AccountType.EXPENSE),
    SUSPENSE: AccountSpec(AccountType.ASSET),
    RECONCILIATION_DIFFERENCES: AccountSpec(AccountType.EXPENSE),
    PSP_PAYABLE: AccountSpec(AccountType.LIABILITY),
}


def chart_spec(code: str) -> AccountSpec | None:
    """The chart's spec for an account code (`psp_receivable:alpha` -> PSP_RECEIVABLE), or None."""
    return CHART.get(code.split(":", 1)[0])


def check_currency(currency: str) -> str:
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise ValueError(f"currency must be a 3-letter upper-case ISO 4217 code, not {currency!r}")
    return currency


@dataclass(frozen=True, slots=True, order=True)
class AccountKey:
    """Names an account: owner ("mer_..." or "platform"), code, currency."""

    owner: str
    code: str
    currency: str

    def __post_init__(self) -> None:
        check_currency(self.currency)
        if not self.owner or not self.code:
            raise ValueError("owner and code are required")
        if "\x00" in self.owner or "\x00" in self.code:
            raise ValueError("owner and code cannot hold a NUL character")


class Accounts:
    """Keys of the chart's accounts, e.g. `Accounts.merchant_available("mer_1", "EUR")`."""

    @staticmethod
    def merchant_pending(merchant: str, currency: str) -> AccountKey:
        return AccountKey(merchant, MERCHANT_PENDING, currency)

    @staticmethod
    def merchant_available(merchant: str, currency: str) -> AccountKey:
        return AccountKey(merchant, MERCHANT_AVAILABLE, currency)

    @staticmethod
    def merchant_escrow(merchant: str, currency: str) -> AccountKey:
        return AccountKey(merchant, MERCHANT_ESCROW, currency)

    @staticmethod
    def merchant_reserve(merchant: str, currency: str) -> AccountKey:
        return AccountKey(merchant, MERCHANT_RESERVE, currency)

    @staticmethod
    def psp_receivable(connector: str, currency: str) -> AccountKey:
        return AccountKey(PLATFORM, f"{PSP_RECEIVABLE}:{connector}", currency)

    @staticmethod
    def fee_revenue(currency: str) -> AccountKey:
        return AccountKey(PLATFORM, FEE_REVENUE, currency)

    @staticmethod
    def psp_fee_expense(currency: str) -> AccountKey:
        return AccountKey(PLATFORM, PSP_FEE_EXPENSE, currency)

    @staticmethod
    def bank_cash(currency: str) -> AccountKey:
        return AccountKey(PLATFORM, BANK_CASH, currency)

    @staticmethod
    def payouts_in_transit(currency: str) -> AccountKey:
        return AccountKey(PLATFORM, PAYOUTS_IN_TRANSIT, currency)

    @staticmethod
    def chargeback_losses(currency: str) -> AccountKey:
        return AccountKey(PLATFORM, CHARGEBACK_LOSSES, currency)

    @staticmethod
    def suspense(currency: str) -> AccountKey:
        return AccountKey(PLATFORM, SUSPENSE, currency)

    @staticmethod
    def reconciliation_differences(currency: str) -> AccountKey:
        return AccountKey(PLATFORM, RECONCILIATION_DIFFERENCES, currency)

    @staticmethod
    def psp_payable(connector: str, currency: str) -> AccountKey:
        return AccountKey(PLATFORM, f"{PSP_PAYABLE}:{connector}", currency)


@dataclass(frozen=True, slots=True)
class PostingLine:
    """One leg of a journal: a positive amount debits `account`, a negative one credits it."""

    account: AccountKey
    amount: int

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError("amount must be an int in minor units")
        if self.amount == 0:
            raise ValueError("a posting line moves a non-zero amount")
        if abs(self.amount) >= 2**62:
            raise ValueError("amount out of range")

    @classmethod
    def debit(cls, account: AccountKey, amount: int) -> PostingLine:
        return cls(account, amount)

    @classmethod
    def credit(cls, account: AccountKey, amount: int) -> PostingLine:
        return cls(account, -amount)

    @property
    def currency(self) -> str:
        return self.account.currency


def transfer_lines(*, debit: AccountKey, credit: AccountKey, amount: int) -> tuple[PostingLine, PostingLine]:
    """The two lines of a simple transfer (TigerBeetle's transfer): debit one, credit the other."""
    if amount <= 0:
        raise ValueError("amount must be positive")
    return (PostingLine.debit(debit, amount), PostingLine.credit(credit, amount))


@dataclass(frozen=True, slots=True)
class JournalRequest:
    """One journal of `journal_post_many`."""

    reference: str
    lines: tuple[PostingLine, ...]
    occurred_at: datetime
    memo: str = ""
    kind: str = JournalKind.TRANSFER
    metadata: dict = field(default_factory=dict)
    pending: bool = False  # a pending (two-phase) journal: reserves, posts nothing yet
    expires_at: datetime | None = None  # pending only: voided by the scheduler after this


@dataclass(frozen=True, slots=True)
class PostResult:
    """The outcome of one journal of a posting call."""

    index: int
    status: PostStatus
    journal_id: int | None
    reference: str

    @property
    def ok(self) -> bool:
        return self.status.ok

    @property
    def created(self) -> bool:
        return self.status is PostStatus.CREATED


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class Balance:
    """A merchant's balance, per currency, as `GET /v1/balance` shows it (amounts owed to it)."""

    pending: tuple[Money, ...]
    available: tuple[Money, ...]
    escrow: tuple[Money, ...]
    reserve: tuple[Money, ...] = ()


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """One account's balances, debit-positive (`posted` = debits - credits)."""

    key: AccountKey
    posted: int
    debits_pending: int
    credits_pending: int
    version: int
