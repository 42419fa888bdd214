"""Typed ledger errors. A limit breach or a reference conflict is also a `PostStatus` value:
`journal_post_many(..., atomic=False)` returns statuses; the single-journal services raise these."""

from __future__ import annotations

from ledger.types import PostResult, PostStatus
from payera.core.errors import InvalidRequestError, PayeraError


class LedgerError(PayeraError):
    type = "api_error"
    code = "ledger_error"
    http_status = 500
    default_message = "The ledger refused the posting."


class UnbalancedJournalError(LedgerError):
    code = "journal_unbalanced"
    default_message = "A journal's lines must sum to zero in each currency."


class InvalidPostingError(LedgerError):
    code = "posting_invalid"
    default_message = "The posting is invalid."


class AccountNotFoundError(LedgerError):
    code = "account_not_found"
    default_message = "No such ledger account."


class JournalNotFoundError(LedgerError):
    code = "journal_not_found"
    default_message = "No such journal."


class BalanceTransactionCursorError(LedgerError):
    code = "balance_transaction_not_found"
    default_message = "No such balance transaction."


class PostingRejectedError(LedgerError):
    """A journal was not posted; `status` says why (a TigerBeetle-style result code)."""

    code = "posting_rejected"

    def __init__(self, result: PostResult, message: str | None = None):
        self.result = result
        self.status = result.status
        super().__init__(message or f"journal {result.reference!r} not posted: {result.status.value}")


class JournalReferenceConflictError(PostingRejectedError):
    code = "journal_reference_conflict"


class LimitExceededError(PostingRejectedError):
    """debits_must_not_exceed_credits or credits_must_not_exceed_debits would break."""

    code = "balance_limit_exceeded"


class InsufficientFundsError(InvalidRequestError):
    """For API layers that want a 400 for a limit breach; the ledger itself raises LimitExceededError."""

    code = "insufficient_funds"


class AccountFrozenError(PostingRejectedError):
    code = "account_frozen"


class PendingStateError(PostingRejectedError):
    """The pending journal is not open: already posted/voided, expired, or not pending at all."""

    code = "pending_not_open"


class JournalAlreadyReversedError(PostingRejectedError):
    code = "journal_already_reversed"


class BalanceOverflowError(PostingRejectedError):
    """An account's balance, debits or credits pending, version (or an entry's balance after it)
    would pass the 64-bit integer range the ledger keeps them in (status `overflow`)."""

    code = "balance_overflow"


class HotAccountVersionError(LedgerError):
    """A hot account's entries are versioned per shard: it has no single version sequence."""

    code = "hot_account_has_no_version"


def error_for(result: PostResult) -> PostingRejectedError:
    cls: type[PostingRejectedError] = {
        PostStatus.REFERENCE_CONFLICT: JournalReferenceConflictError,
        PostStatus.EXCEEDS_CREDITS: LimitExceededError,
        PostStatus.EXCEEDS_DEBITS: LimitExceededError,
        PostStatus.ACCOUNT_FROZEN: AccountFrozenError,
        PostStatus.NOT_PENDING: PendingStateError,
        PostStatus.PENDING_EXPIRED: PendingStateError,
        PostStatus.PENDING_ALREADY_RESOLVED: PendingStateError,
        PostStatus.ALREADY_REVERSED: JournalAlreadyReversedError,
        PostStatus.OVERFLOW: BalanceOverflowError,
    }.get(result.status, PostingRejectedError)
    return cls(result)
