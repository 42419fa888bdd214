"""Journal lines of payments, without I/O (STYLE: callers build lines in a pure module).

Capture of gross G with merchant fee F, on connector C (two journals, posted together):
  capture:<att>      Dr psp_receivable:C  G   /  Cr merchant_pending  G
  capture_fee:<att>  Dr merchant_pending  F   /  Cr fee_revenue       F
Refund R of a capture, fee policy "proportional" (docs/payments.md): the merchant gets back the
part of the fee that the refunded share bears, computed on the running total so that refunding
everything returns exactly the whole fee (`refund_fee_back`; a booking's refund out of escrow has
the fixed share its escrow keeps for it and counts first, whenever it settles):
  refund:<re>        Dr merchant_pending  R   /  Cr psp_receivable:C  R
  refund_fee:<re>    Dr fee_revenue       f   /  Cr merchant_pending  f      (when f > 0)
A succeeded refund the PSP fails afterwards (the shopper's bank sent it back) is mirrored, into
the merchant's pending account (a booking's refund out of escrow too once the booking is closed;
into its escrow account while the booking is still confirmed, which then holds it again):
  refund_reversal:<re>      Dr psp_receivable:C  R  /  Cr merchant_pending  R
  refund_fee_reversal:<re>  Dr merchant_pending  f  /  Cr fee_revenue       f   (the f it returned)
Dispute (chargeback) of D on connector C with chargeback fee K (PAYMENTS_CHARGEBACK_FEE[currency]), when
the PSP opens it (the PSP takes D back from us; we take D and K from the merchant):
  chargeback:<dp>          Dr merchant_pending  D  /  Cr psp_receivable:C  D
  chargeback_fee:<dp>      Dr merchant_pending  K  /  Cr fee_revenue       K   (when K > 0)
Won (the PSP gives D back): both mirrored, the merchant is whole again:
  chargeback_won:<dp>      Dr psp_receivable:C  D  /  Cr merchant_pending  D
  chargeback_fee_won:<dp>  Dr fee_revenue       K  /  Cr merchant_pending  K   (when K > 0)
Lost: nothing more (the creation's journals stand).
Bookings (escrow, docs/ledger.md): the capture of a booking's payment and the refund out of its
escrow post the same journals with the merchant's escrow account in place of its pending account
(`escrow=True`), the fee included, so the escrow holds G - F. Completion releases what is left to
the merchant once the refund (if any) has taken its share:
  escrow_release:<bk>      Dr merchant_escrow   X  /  Cr merchant_pending   X
with X = A - ceil(F·A/G) for a completion of A of G (A = G: X = G - F), which is exactly what the
escrow holds for the booking less what the refund of the rest R = G - A takes out of it (R less
its proportional fee share).
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.types import Accounts, JournalKind, PostingLine, transfer_lines
from payera.core.money import currency_exponent


@dataclass(frozen=True, slots=True)
class FeeRule:
    """Basis points of the gross (290 = 2.9 %) plus a fixed part in hundredths of the major unit,
    scaled to the currency's exponent (30 = 0.30 EUR, 0 JPY... scaled: 30 -> 0 JPY)."""

    percent_bp: int = 0
    fixed: int = 0

    def fee(self, gross: int, currency: str) -> int:
        scale = 10 ** currency_exponent(currency)
        fee = (gross * self.percent_bp + 5000) // 10000 + self.fixed * scale // 100
        return max(0, min(fee, gross))


def fee_rule(schedules: dict, schedule: str, method_type: str) -> FeeRule:
    """The rule of a merchant's fee schedule for a payment method type (falls back to `default`
    of the schedule, then to the `standard` schedule)."""
    table = schedules.get(schedule) or schedules.get("standard") or {}
    rule = table.get(method_type) or table.get("default") or {}
    return FeeRule(percent_bp=int(rule.get("percent_bp", 0)), fixed=int(rule.get("fixed", 0)))


@dataclass(frozen=True, slots=True)
class Journal:
    reference: str
    kind: str
    lines: tuple[PostingLine, ...]
    memo: str


def _merchant_account(merchant_id: str, currency: str, *, escrow: bool):
    return (Accounts.merchant_escrow if escrow else Accounts.merchant_pending)(merchant_id, currency)


def capture_journals(
    *, attempt_id: str, merchant_id: str, connector: str, gross: int, fee: int, currency: str, escrow: bool = False
) -> list[Journal]:
    merchant = _merchant_account(merchant_id, currency, escrow=escrow)
    journals = [
        Journal(
            f"capture:{attempt_id}",
            JournalKind.CAPTURE,
            transfer_lines(
                debit=Accounts.psp_receivable(connector, currency),
                credit=merchant,
                amount=gross,
            ),
            f"capture of {attempt_id}",
        )
    ]
    if fee > 0:
        journals.append(
            Journal(
                f"capture_fee:{attempt_id}",
                JournalKind.FEE,
                transfer_lines(
                    debit=merchant,
                    credit=Accounts.fee_revenue(currency),
                    amount=fee,
                ),
                f"fee on capture of {attempt_id}",
            )
        )
    return journals


def refund_fee_share(*, fee: int, captured: int, refunded_before: int, refund: int) -> int:
    """The fee returned with a refund under the proportional policy: fee·(before+refund)/captured
    minus fee·before/captured (floors), so the shares add up to the fee exactly at 100 %."""
    if captured <= 0:
        return 0
    return fee * (refunded_before + refund) // captured - fee * refunded_before // captured


def refund_fee_back(*, fee: int, captured: int, refunded_before: int, returned_before: int, refund: int,
                    escrow_refund_ahead: int = 0) -> int:
    """The fee returned with a refund out of the merchant's pending balance, on the running total:
    what the whole refunded amount bears, floor(fee·total/captured), less the fee already returned
    (`returned_before`, what the ledger shows). A booking's refund out of escrow returns a fixed
    share, floor(fee·R/captured) (`refund_fee_share` with nothing before: exactly what the escrow
    keeps for it), whenever it settles; while it is still pending (`escrow_refund_ahead` = R) it is
    counted first, as if it had settled, so that its later fixed share and this refund's add up to
    the running total. Refunding everything, in any order of settlement, returns the whole fee."""
    if captured <= 0:
        return 0
    total = min(refunded_before + escrow_refund_ahead + refund, captured)
    returned = returned_before + refund_fee_share(fee=fee, captured=captured, refunded_before=0,
                                                  refund=escrow_refund_ahead)
    return max(0, fee * total // captured - returned)


def refund_journals(
    *, refund_id: str, merchant_id: str, connector: str, amount: int, fee_back: int, currency: str,
    escrow: bool = False,
) -> list[Journal]:
    merchant = _merchant_account(merchant_id, currency, escrow=escrow)
    journals = [
        Journal(
            f"refund:{refund_id}",
            JournalKind.REFUND,
            transfer_lines(
                debit=merchant,
                credit=Accounts.psp_receivable(connector, currency),
                amount=amount,
            ),
            f"refund {refund_id}",
        )
    ]
    if fee_back > 0:
        journals.append(
            Journal(
                f"refund_fee:{refund_id}",
                JournalKind.FEE,
                transfer_lines(
                    debit=Accounts.fee_revenue(currency),
                    credit=merchant,
                    amount=fee_back,
                ),
                f"fee returned with refund {refund_id}",
            )
        )
    return journals


def refund_reversal_journals(
    *, refund_id: str, merchant_id: str, connector: str, amount: int, fee_back: int, currency: str,
    escrow: bool = False,
) -> list[Journal]:
    """The mirror of a succeeded refund the PSP failed afterwards (the shopper's bank sent it back):
    the PSP owes the money again and the merchant has it back, less the fee share the refund had
    returned (`fee_back`, as the ledger posted it). `escrow`: a refund out of a booking's escrow
    whose booking is still confirmed goes back into the escrow that still holds it."""
    merchant = _merchant_account(merchant_id, currency, escrow=escrow)
    journals = [
        Journal(
            f"refund_reversal:{refund_id}",
            JournalKind.REVERSAL,
            transfer_lines(debit=Accounts.psp_receivable(connector, currency), credit=merchant, amount=amount),
            f"refund {refund_id} failed after it succeeded",
        )
    ]
    if fee_back > 0:
        journals.append(
            Journal(
                f"refund_fee_reversal:{refund_id}",
                JournalKind.REVERSAL,
                transfer_lines(debit=merchant, credit=Accounts.fee_revenue(currency), amount=fee_back),
                f"fee returned with refund {refund_id} taken again",
            )
        )
    return journals


def chargeback_journals(
    *, dispute_id: str, merchant_id: str, connector: str, amount: int, fee: int, currency: str, won: bool = False
) -> list[Journal]:
    """The journals of a dispute when it opens, or (won=True) their mirror when it is won."""
    pending = Accounts.merchant_pending(merchant_id, currency)
    receivable = Accounts.psp_receivable(connector, currency)
    revenue = Accounts.fee_revenue(currency)
    suffix = "_won" if won else ""
    journals = [
        Journal(
            f"chargeback{suffix}:{dispute_id}",
            JournalKind.REVERSAL if won else JournalKind.CHARGEBACK,
            transfer_lines(debit=receivable, credit=pending, amount=amount)
            if won else transfer_lines(debit=pending, credit=receivable, amount=amount),
            f"dispute {dispute_id} won" if won else f"dispute {dispute_id}",
        )
    ]
    if fee > 0:
        journals.append(
            Journal(
                f"chargeback_fee{suffix}:{dispute_id}",
                JournalKind.REVERSAL if won else JournalKind.FEE,
                transfer_lines(debit=revenue, credit=pending, amount=fee)
                if won else transfer_lines(debit=pending, credit=revenue, amount=fee),
                f"chargeback fee of {dispute_id} returned" if won else f"chargeback fee of {dispute_id}",
            )
        )
    return journals


def escrow_release_amount(*, gross: int, fee: int, amount: int) -> int:
    """What a completion of `amount` of a booking captured at `gross` with fee `fee` releases to
    the merchant: `amount` less the fee it bears, ceil(fee·amount/gross); the refund of the rest
    returns floor(fee·rest/gross) (refund_fee_share), so the two shares add up to the fee."""
    if gross <= 0:
        return 0
    return amount - (-(-fee * amount // gross))


def escrow_release_journals(*, booking_id: str, merchant_id: str, amount: int, currency: str,
                            refund_id: str | None = None) -> list[Journal]:
    """The release of a completed booking's escrow; with `refund_id`, the release of what the
    booking's refund out of escrow would have taken, once the PSP reports that refund failed."""
    if amount <= 0:
        return []
    reference = f"escrow_release_unrefunded:{refund_id}" if refund_id else f"escrow_release:{booking_id}"
    return [
        Journal(
            reference,
            JournalKind.ESCROW,
            transfer_lines(
                debit=Accounts.merchant_escrow(merchant_id, currency),
                credit=Accounts.merchant_pending(merchant_id, currency),
                amount=amount,
            ),
            f"escrow of booking {booking_id} released" + (f" (refund {refund_id} failed)" if refund_id else ""),
        )
    ]
