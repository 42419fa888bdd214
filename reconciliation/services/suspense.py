"""Money in suspense moved to where it belongs once finance explains it (issue #8; docs/reconciliation.md,
"Moving money out of suspense"; decision: docs/decisions/reconciliation-resolutions.md).

A report line Payera did not know (missing in Payera, or a duplicate the PSP really paid) that
finance settled as reported put its gross into `suspense` (`recon_settle:<id>`). Once explained,
`suspense_reallocate` moves (part of) it, in one balanced journal `recon_suspense:<id>:<n>` (kind
`adjustment`; n: the discrepancy's n-th move), to:

- `receivable`: the PSP receivable of the capture or refund of Payera's that the money paid, or of
  a returned refund's reversal (money back, +) or refund half (-), told by the move's direction (the
  item is then cleared like a resolution clears it: `receivable_cleared` on the discrepancy, with
  `cleared_account` suspense, so the receivable check and the aging stay true, and a later report
  line settling the same item gives the money back to suspense);
- `merchant`: a merchant's pending balance (money the merchant is owed; the settlement run moves it
  to available after the merchant's delay, as any capture);
- `psp_refund_due`: `psp_payable:<psp>`, what Payera owes the PSP back (paid by mistake).

Finance only (`reconciliation.reallocate_suspense_discrepancy`), audited (the move is recorded in
the discrepancy's `suspense_moves`, a save the audit trail records), merchant-scoped (the
discrepancy's merchant, and the merchant the money goes to). Never more than is left in suspense
for the line, in its currency and direction. Idempotent: `move` (the n the caller saw: the admin
form carries it) makes a retry of the same move return without moving money again; a move without
it takes the next n (running the same full move twice: the second finds nothing left).
"""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from ledger.types import Accounts, JournalKind, PostingLine
from payera.core.errors import InvalidRequestError
from payera.staff.access import staff_can_access_merchant
from payments import selectors as payments_selectors
from reconciliation.errors import DiscrepancyMoneyError, DiscrepancyPermissionError
from reconciliation.models import Discrepancy, DiscrepancyStatus
from reconciliation.services.discrepancies import (
    SUSPENSE,
    SUSPENSE_KINDS,
    _check,
    _locked,
    _post,
    four_eyes,
    may_see,
    moved_alone_on_item,
    receivable_left,
)

TARGETS = ("receivable", "merchant", "psp_refund_due")


def in_suspense(d: Discrepancy) -> tuple[str, int]:
    """(currency, signed minor units) that the discrepancy's resolution put into suspense (its line's
    gross: + money received, - money the PSP took), less what was moved out since, plus what a later
    report line gave back to suspense of a move to the receivable; (currency, 0) when it put nothing
    there."""
    line = d.line
    if (
        line is None or d.kind not in SUSPENSE_KINDS or d.status != DiscrepancyStatus.RESOLVED
        or d.adjustment_reference != f"recon_settle:{d.pk}"
    ):  # fmt: skip
        return d.currency, 0
    moved = sum(int(m["amount"]) for m in d.suspense_moves or [])
    # a move to the receivable that a later report line gave back (lines_recover) is in suspense again
    back = d.receivable_recovered if d.cleared_account == SUSPENSE else 0
    return line.currency, line.gross - moved + back


def _item(psp: str, object_id: str, positive: bool) -> tuple[str, int, str] | None:
    """(currency, signed gross, merchant id) of the item `object_id` names at `psp`, in the move's
    direction where it has two: a succeeded capture (+) or refund (-), or a returned refund (its
    refund half -, its reversal +: the two items on the receivable that its `refund` and
    `refund_reversal` lines settle); an item of the other direction when that is all it has (the
    move is then refused by its amount); None when there is none."""
    from reconciliation.selectors import refund_reversed_sql

    t = payments_selectors.settlement_tables()
    found = []
    with connection.cursor() as cursor:
        for table, sign, which in (
            (t["capture"], 1, "x.status = 'succeeded'"),
            (t["refund"], -1, f"(x.status = 'succeeded' OR {refund_reversed_sql('x')})"),
            (t["refund"], 1, refund_reversed_sql("x")),
        ):
            cursor.execute(
                f"SELECT x.currency, x.amount, a.merchant_id FROM {table} x JOIN {t['attempt']} a"  # noqa: S608
                f" ON a.id = x.attempt_id WHERE x.id = %s AND a.connector = %s AND {which}",
                [object_id, psp],
            )
            row = cursor.fetchone()
            if row:
                found.append((row[0], sign * int(row[1]), row[2]))
    return next((i for i in found if (i[1] > 0) == positive), found[0] if found else None)


def _moved_alone(d: Discrepancy, moves: list[dict]) -> int:
    """What the discrepancy's moves made without a second user's approval moved (absolute). A move
    records `approved` since the split-move rule; one recorded before it has no such key: it was an
    approval's if a done approval of this discrepancy asked for exactly that move (its number and
    amount: the admin's form always names the move), otherwise it counts as made alone (an approval
    asked without a move number, or whose move grew past what it asked, can not be told apart from a
    move made alone: counting it errs towards asking a second user, never the other way)."""
    from reconciliation.models import DiscrepancyAction, DiscrepancyApproval, DiscrepancyApprovalStatus

    approved_before = set()
    if any("approved" not in m for m in moves):
        done = DiscrepancyApproval.objects.filter(
            discrepancy_id=d.pk, action=DiscrepancyAction.REALLOCATE_SUSPENSE, status=DiscrepancyApprovalStatus.DONE
        ).values_list("params", "amount")
        approved_before = {(int(p["move"]), amount) for p, amount in done if isinstance((p or {}).get("move"), int)}

    def alone(m: dict) -> bool:
        if "approved" in m:
            return not m["approved"]
        return (int(m["move"]), abs(int(m["amount"]))) not in approved_before

    return sum(abs(int(m["amount"])) for m in moves if alone(m))


@transaction.atomic(durable=True)
def suspense_reallocate(
    *, discrepancy_id: int, user, reason: str, to: str, amount: int | None = None, currency: str | None = None,
    object_id: str = "", merchant_id: str = "", move: int | None = None,
) -> Discrepancy:  # fmt: skip
    """`reallocate_now` in a transaction of its own: a move above the approval threshold is refused
    (DiscrepancyNeedsApprovalError; `discrepancy_request` asks for a second user instead)."""
    return reallocate_now(discrepancy_id=discrepancy_id, user=user, reason=reason, to=to, amount=amount,
                          currency=currency, object_id=object_id, merchant_id=merchant_id, move=move,
                          approved=False)  # fmt: skip


def reallocate_now(
    *, discrepancy_id: int, user, reason: str, to: str, amount: int | None = None, currency: str | None = None,
    object_id: str = "", merchant_id: str = "", move: int | None = None, approved: bool | int,
) -> Discrepancy:  # fmt: skip
    """Move `amount` (default: all that is left) of what the discrepancy's line put into suspense to
    `to` (module docstring). DiscrepancyMoneyError for what does not fit (nothing in suspense, more
    than is left, another currency or direction, an item not on the receivable); InvalidRequestError
    for bad input; DiscrepancyPermissionError without the permission or the merchants' access."""
    reason = _check(user, "reallocate_suspense_discrepancy", reason)
    if to not in TARGETS:
        raise InvalidRequestError(f"to must be one of {', '.join(TARGETS)}.", param="to")
    for name, value in (("amount", amount), ("move", move)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidRequestError(f"{name} must be an integer.", param=name)
    if amount == 0:
        raise InvalidRequestError("amount must not be 0 (leave it out to move all that is left).", param="amount")
    if move is not None and move < 1:
        raise InvalidRequestError("move counts from 1.", param="move")
    object_id, merchant_id = (object_id or "").strip(), (merchant_id or "").strip()
    if to == "receivable" and not object_id:
        raise InvalidRequestError("Moving to the PSP receivable needs the capture or refund id.", param="object_id")
    if to == "merchant" and not merchant_id:
        raise InvalidRequestError("Moving to a merchant needs the merchant id.", param="merchant_id")
    d = _locked(discrepancy_id, money=True)
    if not may_see(user, d.merchant_id):
        raise DiscrepancyPermissionError()
    moves = list(d.suspense_moves or [])
    if move is not None and move <= len(moves):  # a retry of a move already made: nothing moves again
        done = moves[move - 1]
        # the target as the caller names it: a merchant's id only for a move to that merchant (a
        # move to the receivable stores the item's merchant, the form sends none)
        same = (done["to"], done["object_id"]) == (to, object_id if to == "receivable" else "") and (
            to != "merchant" or done["merchant_id"] == merchant_id) and (
            amount is None or int(done["amount"]) == amount)  # fmt: skip
        if not same:
            raise DiscrepancyMoneyError(f"Move {move} of discrepancy {d.pk} was made already, to another account or"
                                        " of another amount: reload the discrepancy.", param="move")  # fmt: skip
        return d
    if move is not None and move != len(moves) + 1:
        raise DiscrepancyMoneyError(f"Discrepancy {d.pk} has {len(moves)} move(s): the next is {len(moves) + 1}.",
                                    param="move")  # fmt: skip
    suspense_currency, left = in_suspense(d)
    if currency is not None and currency.strip().upper() != suspense_currency:
        raise DiscrepancyMoneyError(f"Discrepancy {d.pk}'s suspense is in {suspense_currency}, not {currency}.",
                                    param="currency")  # fmt: skip
    if not left:
        raise DiscrepancyMoneyError(
            f"Discrepancy {d.pk} has nothing in suspense (only a line missing in Payera or a duplicate settled as"
            " reported puts money there; what it put there may have been moved already)."
        )
    amount = left if amount is None else amount
    if (amount > 0) != (left > 0) or abs(amount) > abs(left):
        raise DiscrepancyMoneyError(
            f"The move must lie between 0 and {left} {suspense_currency} (what is left in suspense for the line of"
            f" discrepancy {d.pk}).", param="amount",
        )  # fmt: skip
    if to == "receivable":
        if d.object_id and d.object_id != object_id:
            raise DiscrepancyMoneyError(f"Discrepancy {d.pk}'s money was moved to {d.object_id} already: one item"
                                        " per discrepancy.", param="object_id")  # fmt: skip
        item = _item(d.psp, object_id, amount > 0)
        if item is None:
            raise DiscrepancyMoneyError(f"{object_id} is no succeeded capture or refund at {d.psp}, nor a returned"
                                        " refund.", param="object_id")  # fmt: skip
        item_currency, gross, item_merchant = item
        if item_currency != suspense_currency:
            raise DiscrepancyMoneyError(f"{object_id} is in {item_currency}, the suspense in {suspense_currency}.",
                                        param="object_id")  # fmt: skip
        # (what resolutions and this discrepancy's earlier moves hold cleared counts too)
        still = receivable_left(psp=d.psp, object_id=object_id, currency=item_currency, gross=gross)
        if not still or (amount > 0) != (still > 0) or abs(amount) > abs(still):
            raise DiscrepancyMoneyError(
                f"{object_id} has {still} {item_currency} on the PSP receivable: the move must lie between 0 and it.",
                param="amount",
            )  # fmt: skip
        target, merchant_id = Accounts.psp_receivable(d.psp, item_currency), item_merchant
    elif to == "merchant":
        from payera.merchants.models import Merchant

        if not Merchant.objects.filter(pk=merchant_id).exists():
            raise InvalidRequestError(f"No merchant {merchant_id}.", param="merchant_id")
        target = Accounts.merchant_pending(merchant_id, suspense_currency)
    else:
        target = Accounts.psp_payable(d.psp, suspense_currency)
    if merchant_id and not staff_can_access_merchant(user, merchant_id):
        raise DiscrepancyPermissionError()
    # what this discrepancy's earlier moves made without approval count too: a move split into moves
    # under the threshold is measured whole
    alone = _moved_alone(d, moves)
    earlier = "this discrepancy's earlier moves made without approval"
    if to == "receivable":
        # a move to an item's receivable clears it as an adjustment does: what the item's other
        # resolutions moved without approval counts too (four eyes per item)
        on_item = moved_alone_on_item(d, suspense_currency, object_id=object_id)
        if on_item:
            alone += on_item
            earlier = f"{earlier} and {object_id}'s other resolutions moved without approval"
    four_eyes(amount=amount, currency=suspense_currency, approved=approved, user=user,
              counted=abs(amount) + alone, earlier=earlier)  # fmt: skip
    n = len(moves) + 1
    reference = f"recon_suspense:{d.pk}:{n}"
    lines = (PostingLine(Accounts.suspense(suspense_currency), amount), PostingLine(target, -amount))
    _post(reference=reference, lines=lines, kind=JournalKind.ADJUSTMENT, d=d, user=user, reason=reason)
    moves.append({
        "move": n, "reference": reference, "amount": amount, "currency": suspense_currency, "to": to,
        "account": f"{target.owner}/{target.code}", "object_id": object_id if to == "receivable" else "",
        "merchant_id": merchant_id if to != "psp_refund_due" else "", "by": user.get_username(),
        "reason": reason[:500], "at": timezone.now().isoformat(), "approved": approved is not False,
    })  # fmt: skip
    d.suspense_moves = moves
    if to == "receivable":  # the item leaves the receivable as a resolution's clearing does
        d.object_id = object_id
        d.receivable_cleared += amount
        d.cleared_currency, d.cleared_account = suspense_currency, SUSPENSE
        if approved is False and d.moved_alone_currency in ("", suspense_currency):
            # and counts for the item's later resolutions (moved_alone_on_item) as made alone; the
            # line's settle into suspense is in its currency, the suspense's: never another one
            d.moved_alone += abs(amount)
            d.moved_alone_currency = suspense_currency
    d.save()
    return d
