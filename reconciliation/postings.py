"""Pure journal lines of settlement and payouts (no I/O). Amounts are positive minor units."""

from __future__ import annotations

from ledger.types import Accounts, PostingLine, transfer_lines


def settlement_lines(*, merchant_id: str, currency: str, amount: int) -> tuple[PostingLine, ...]:
    """Merchant pending -> available: debit pending (we owe less there), credit available."""
    return transfer_lines(
        debit=Accounts.merchant_pending(merchant_id, currency),
        credit=Accounts.merchant_available(merchant_id, currency),
        amount=amount,
    )


def payout_create_lines(*, merchant_id: str, currency: str, amount: int) -> tuple[PostingLine, ...]:
    """Available -> payouts in transit (a clearing account: what we must send to the bank)."""
    return transfer_lines(
        debit=Accounts.merchant_available(merchant_id, currency),
        credit=Accounts.payouts_in_transit(currency),
        amount=amount,
    )


def payout_paid_lines(*, currency: str, amount: int) -> tuple[PostingLine, ...]:
    """The bank sent it: in transit is cleared against bank cash."""
    return transfer_lines(
        debit=Accounts.payouts_in_transit(currency), credit=Accounts.bank_cash(currency), amount=amount
    )


def payout_failed_lines(*, merchant_id: str, currency: str, amount: int) -> tuple[PostingLine, ...]:
    """The bank returned it: in transit back to the merchant's available balance."""
    return transfer_lines(
        debit=Accounts.payouts_in_transit(currency),
        credit=Accounts.merchant_available(merchant_id, currency),
        amount=amount,
    )


def payout_returned_lines(*, merchant_id: str, currency: str, amount: int) -> tuple[PostingLine, ...]:
    """The bank sent a paid payout back: the cash is in our bank again and the merchant is owed it
    (bank cash -> the merchant's available balance; in transit was cleared when it was paid)."""
    return transfer_lines(
        debit=Accounts.bank_cash(currency),
        credit=Accounts.merchant_available(merchant_id, currency),
        amount=amount,
    )


def reserve_kept(*, available: int, reserve_bps: int) -> int:
    """What stays in available at a payout: `reserve_bps` of it, rounded up (never pay out more)."""
    if available <= 0 or reserve_bps <= 0:
        return 0
    return min(available, -(-available * reserve_bps // 10000))


def payout_amount(*, available: int, reserve_bps: int, minimum: int) -> int:
    """The amount to pay out now, or 0 when it would be below `minimum`."""
    amount = available - reserve_kept(available=available, reserve_bps=reserve_bps)
    return amount if amount >= minimum else 0
