"""Finance's work on discrepancies: open -> investigating -> resolved (a reason, and money: a ledger
adjustment, or the reported line settled as reported; finance role only) or written off (a
receivable the PSP will never pay becomes a loss). Each transition is audited (payera.audit
registry on the model) and needs its permission (`reconciliation.<verb>_discrepancy`; roles are
data in payera/staff/roles.py: finance holds `reconciliation.*`).

Every resolution that takes something off the PSP receivable records it on the discrepancy
(`receivable_cleared`, in `cleared_currency`): the receivable check subtracts these, the aging
takes them off the item they name (docs/reconciliation.md, "Resolving with money")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone
from django_fsm import can_proceed

from ledger import services as ledger_services
from ledger.types import Accounts, JournalKind, PostingLine
from payera.backoffice.services import REASON_MIN_LENGTH
from payera.core.errors import InvalidRequestError
from payera.core.masking import mask_account_numbers
from payera.core.money import PER_CURRENCY_FALLBACK, per_currency_amount
from psp_adapters.port import SettlementKind
from reconciliation.errors import (
    DiscrepancyMoneyError,
    DiscrepancyNeedsApprovalError,
    DiscrepancyPermissionError,
    DiscrepancyStateError,
)
from reconciliation.models import (
    Discrepancy,
    DiscrepancyStatus,
    ReconOutcome,
    ReconRunStatus,
    SingleHandedDay,
    StatementLine,
)
from reconciliation.services.locks import reconcile_psp_lock

# the kinds that name a capture, refund or dispute of Payera's still on the PSP receivable (no
# posted line settled it): an adjustment or a write-off takes (part of) it off
ITEM_KINDS = (ReconOutcome.MISSING_AT_PSP, ReconOutcome.AMOUNT_MISMATCH, ReconOutcome.CURRENCY_MISMATCH)
# the kinds whose report line was not posted and may be booked as the PSP reported it
SETTLE_KINDS = (ReconOutcome.AMOUNT_MISMATCH, ReconOutcome.CURRENCY_MISMATCH, ReconOutcome.MISSING_IN_PAYERA,
                ReconOutcome.DUPLICATE)  # fmt: skip
# the kinds whose line settled as reported goes to suspense (Payera does not know what it pays)
SUSPENSE_KINDS = (ReconOutcome.MISSING_IN_PAYERA, ReconOutcome.DUPLICATE)

# the account a clearing debited (Discrepancy.cleared_account): a later settlement of the item gives
# the cleared amount back to it (a recovery; docs/decisions/reconciliation-resolutions.md)
FEE_EXPENSE, DIFFERENCES, SUSPENSE = "psp_fee_expense", "reconciliation_differences", "suspense"
CLEARED_ACCOUNTS = {
    FEE_EXPENSE: Accounts.psp_fee_expense,
    DIFFERENCES: Accounts.reconciliation_differences,
    SUSPENSE: Accounts.suspense,
}
Recovered = Mapping[tuple[str, str], int]  # (cleared account code, currency) -> amount given back (item's sign)


def merged_lines(legs) -> tuple[PostingLine, ...]:
    """Journal lines, one per account (amounts of the same account added), zero legs left out."""
    out: dict = {}
    for account, amount in legs:
        out[account] = out.get(account, 0) + amount
    return tuple(PostingLine(account, amount) for account, amount in out.items() if amount)


def recovery_legs(recovered: Recovered | None) -> list:
    """What a settlement gives back to the accounts earlier clearings of its item debited: a credit
    of each (the item's sign: a capture's clearing comes back as a credit, a refund's as a debit)."""
    return [(CLEARED_ACCOUNTS[code](currency), -amount)
            for (code, currency), amount in sorted((recovered or {}).items())]  # fmt: skip


def recovered_metadata(recovered: Recovered) -> dict[str, int]:
    """What a settlement journal gave back, for its metadata: "account:currency" -> amount."""
    return {f"{code}:{currency}": amount for (code, currency), amount in sorted(recovered.items())}


def recovered_total(recovered: Recovered | None, currency: str) -> int:
    return sum(amount for (_, cur), amount in (recovered or {}).items() if cur == currency)


def _locked(discrepancy_id: int, *, money: bool = False) -> Discrepancy:
    """The discrepancy, locked. `money`: a resolution that may move money takes its PSP's
    reconciliation lock first (the lock order of the import and the late heal: PSP, discrepancy,
    line, ledger), so an import's or a late heal's settlement of the same item sees the clearing
    (and gives it back) or the resolution sees the line settled (and clears nothing)."""
    if money:
        psp = Discrepancy.objects.filter(pk=discrepancy_id).values_list("psp", flat=True).first()
        if psp is None:
            raise Discrepancy.DoesNotExist(f"no discrepancy {discrepancy_id}")
        reconcile_psp_lock(psp)
    return Discrepancy.objects.select_for_update().get(pk=discrepancy_id)


def may_see(user, merchant_id: str | None) -> bool:
    """Whether the staff member may act on a discrepancy (or a target) of `merchant_id`: one of
    their merchants; a line Payera could not tie to a merchant: all-merchant staff only."""
    from payera.staff.access import staff_can_access_merchant, staff_has_all_merchants

    return staff_can_access_merchant(user, merchant_id) if merchant_id else staff_has_all_merchants(user)


def _scoped(d: Discrepancy, user) -> Discrepancy:
    """Object-level access, checked by the service whoever calls it (the admin checks it too)."""
    if not may_see(user, d.merchant_id):
        raise DiscrepancyPermissionError()
    return d


def _check(user, perm: str, reason: str) -> str:
    if not (user is not None and user.is_active and user.has_perm(f"reconciliation.{perm}")):
        raise DiscrepancyPermissionError()
    reason = (reason or "").strip()
    if len(reason) < REASON_MIN_LENGTH:  # the back office's minimum (its ReasonForm), whoever calls
        raise InvalidRequestError(
            f"A reason of at least {REASON_MIN_LENGTH} characters is required (why: a ticket, what was found).",
            param="reason",
        )
    # shown, exported and posted as a memo (permanent): a card number or IBAN typed in is masked, nothing else
    return mask_account_numbers(reason)


def adjustment_lines(*, psp: str, currency: str, amount: int) -> tuple[PostingLine, ...]:
    """The resolution's adjustment: `amount` takes (part of) a capture, refund or dispute off the
    PSP receivable as PSP cost (fee expense): > 0 a capture or won dispute's reversal the PSP will
    not pay in full, < 0 a refund or chargeback it will not take."""
    return (
        PostingLine(Accounts.psp_fee_expense(currency), amount),
        PostingLine(Accounts.psp_receivable(psp, currency), -amount),
    )


def write_off_lines(*, psp: str, currency: str, amount: int) -> tuple[PostingLine, ...]:
    """A receivable the PSP will never settle, written off: Dr reconciliation differences (a loss;
    a refund's negative amount is a gain) / Cr PSP receivable."""
    return (
        PostingLine(Accounts.reconciliation_differences(currency), amount),
        PostingLine(Accounts.psp_receivable(psp, currency), -amount),
    )


def settle_as_reported_lines(
    *, psp: str, currency: str, gross: int, fee: int, net: int, expected: int | None, item_currency: str = "",
    recovered: Recovered | None = None,
) -> tuple[PostingLine, ...]:  # fmt: skip
    """A report line booked as the PSP reported it: bank cash Dr net, PSP fee expense Dr fee (in the
    line's `currency`), and:

    - Payera expected nothing (`expected` None: a line Payera does not know): suspense Cr gross
      (an unidentified receipt, until explained);
    - Payera's item in the same currency: the PSP receivable Cr what is still owed of it
      (`expected`, its gross, less what earlier clearings took off: `recovered`, given back to the
      accounts they debited) and the rest (`expected - gross`) in reconciliation differences (Cr: the
      PSP paid more, Dr: less);
    - Payera's item in another currency (`item_currency`: a currency mismatch): the line's money is
      reconciliation differences in its currency (Cr gross), and Payera's item leaves the receivable
      of its own currency against reconciliation differences there (Dr expected; the receivable Cr
      what is still owed, the rest given back as above): each currency balances on its own.
    Balances (per currency) when net = gross - fee."""
    legs = [(Accounts.bank_cash(currency), net), (Accounts.psp_fee_expense(currency), fee)]
    if expected is None:
        legs.append((Accounts.suspense(currency), -gross))
        return merged_lines(legs)
    item_currency = item_currency or currency
    owed = expected - recovered_total(recovered, item_currency)
    legs.append((Accounts.psp_receivable(psp, item_currency), -owed))
    if item_currency == currency:
        legs.append((Accounts.reconciliation_differences(currency), expected - gross))
    else:
        legs += [(Accounts.reconciliation_differences(currency), -gross),
                 (Accounts.reconciliation_differences(item_currency), expected)]  # fmt: skip
    return merged_lines(legs + recovery_legs(recovered))


def _item(d: Discrepancy) -> tuple[str, int]:
    """(currency, gross) of the capture (+), refund (-), chargeback (-) or won dispute's reversal (+)
    the discrepancy names, as Payera has it: 0 once a posted report line settled it
    (`item_settled`), and (currency, 0) for a discrepancy that names no such item."""
    line = d.line
    currency = line.expected_currency if line is not None and line.expected_currency else d.currency
    amount = d.payera_amount or 0
    if d.kind not in ITEM_KINDS or not amount or not d.object_id or item_settled(d.psp, d.object_id, amount):
        return currency, 0
    return currency, amount


def item_settled(psp: str, object_id: str, gross: int) -> bool:
    """Whether a posted report line settled the item (its direction: a dispute's chargeback (-) and
    reversal (+) share its id). A line settles once its run is done: an import's lines name their
    journal from the match on, but the journal is posted (and the run marked done) by its finish,
    which takes the PSP's lock after a resolution (and sees its clearing) or fails (and removes the
    lines)."""
    same_sign = "gt" if gross > 0 else "lt"
    return (
        StatementLine.objects.filter(psp=psp, object_id=object_id, run__status=ReconRunStatus.DONE,
                                     **{f"gross__{same_sign}": 0})
        .exclude(journal_reference="").exists()
    )  # fmt: skip


def _clearings(psp: str, object_id: str, currency: str, positive: bool):
    """The discrepancies whose resolutions (or suspense moves) cleared the item off the receivable."""
    return Discrepancy.objects.filter(
        psp=psp, object_id=object_id, cleared_currency=currency,
        **{f"receivable_cleared__{'gt' if positive else 'lt'}": 0},
    )  # fmt: skip


def _cleared_by_others(d: Discrepancy, currency: str, positive: bool):
    return _clearings(d.psp, d.object_id, currency, positive).exclude(pk=d.pk)


def receivable_left(*, psp: str, object_id: str, currency: str, gross: int, exclude_pk: int | None = None) -> int:
    """What is still on the PSP receivable of the item (signed minor units): 0 once a posted line
    settled it, else its gross less what resolutions hold cleared of it (cleared less what later
    settlements gave back; not `exclude_pk`'s own), never past zero. The one rule for adjustments,
    write-offs and suspense moves to the receivable."""
    if not gross or item_settled(psp, object_id, gross):
        return 0
    clearings = _clearings(psp, object_id, currency, gross > 0)
    if exclude_pk is not None:
        clearings = clearings.exclude(pk=exclude_pk)
    cleared = clearings.aggregate(total=Sum(F("receivable_cleared") - F("receivable_recovered")))["total"] or 0
    left = gross - cleared
    return left if (left > 0) == (gross > 0) else 0


def _outstanding(d: Discrepancy) -> tuple[str, int]:
    """(currency, signed minor units) of the item the discrepancy names still on the PSP
    receivable, less what other discrepancies' resolutions cleared (`receivable_left`)."""
    currency, amount = _item(d)
    if not amount:
        return currency, 0
    return currency, receivable_left(psp=d.psp, object_id=d.object_id, currency=currency, gross=amount,
                                     exclude_pk=d.pk)  # fmt: skip


def _recover_item(d: Discrepancy, currency: str, positive: bool) -> dict[tuple[str, str], int]:
    """A resolution that settles the item (a line settled as reported): what other discrepancies
    still hold cleared of it is given back to the accounts they debited (their
    `receivable_recovered` set to their `receivable_cleared`; the rows locked). Returns
    (account, currency) -> amount."""
    out: dict[tuple[str, str], int] = {}
    rows = list(
        _cleared_by_others(d, currency, positive).exclude(receivable_recovered=F("receivable_cleared"))
        .select_for_update().order_by("pk")
    )  # fmt: skip
    for other in rows:
        key = (other.cleared_account or DIFFERENCES, currency)
        out[key] = out.get(key, 0) + other.receivable_cleared - other.receivable_recovered
        other.receivable_recovered = other.receivable_cleared
        other.save(update_fields=["receivable_recovered", "updated_at"])
    return out


def approval_threshold(currency: str) -> int:
    """The four-eyes threshold of `currency`, in its minor units: its entry in
    `RECONCILIATION_APPROVAL_THRESHOLDS`, else `RECONCILIATION_APPROVAL_THRESHOLD` read as hundredths
    of the major unit and scaled to the currency's ISO 4217 exponent (100000: 1,000.00 EUR, ¥1,000,
    1,000.000 BHD). Without a table, a two-decimal currency keeps the old setting's value as it was."""
    table = {**getattr(settings, "RECONCILIATION_APPROVAL_THRESHOLDS", {}),
             PER_CURRENCY_FALLBACK: settings.RECONCILIATION_APPROVAL_THRESHOLD}  # fmt: skip
    return per_currency_amount(table, currency, setting="RECONCILIATION_APPROVAL_THRESHOLDS", warn=False)


# a currency not named in RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS: this many times its approval threshold
DAILY_LIMIT_MULTIPLE = 5


def daily_single_handed_limit(currency: str) -> int:
    """What one user's money resolutions may move without a second user's approval in `currency`
    on one UTC day, in its minor units: its entry in `RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS`,
    else `DAILY_LIMIT_MULTIPLE` times its approval threshold (`approval_threshold`)."""
    table = getattr(settings, "RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS", {})
    code = currency.upper()
    return int(table[code]) if code in table else DAILY_LIMIT_MULTIPLE * approval_threshold(code)


def single_handed_day():
    """The UTC day a resolution made now counts for."""
    return timezone.now().astimezone(dt.UTC).date()


def _single_handed_today(user, currency: str) -> SingleHandedDay:
    """The user's row of the day in `currency`, created when missing, locked until the commit: two
    resolutions by one user at once (other PSPs, other items: no common lock before this one) take
    turns here, and the second reads what the first added. Taken after the PSP's and the
    discrepancy's locks, before the ledger's."""
    key = {"user_id": user.pk, "currency": currency, "day": single_handed_day()}
    SingleHandedDay.objects.bulk_create([SingleHandedDay(**key)], ignore_conflicts=True)
    return SingleHandedDay.objects.select_for_update().get(**key)


def moved_alone_on_item(d: Discrepancy, currency: str, *, object_id: str | None = None) -> int:
    """What the resolutions of the item `d` names (the same PSP and capture, refund or dispute id;
    `object_id`: another item, the one a move out of suspense clears) moved without a second user's
    approval in `currency`, over all its other discrepancies and all time (absolute minor units); 0
    for a discrepancy that names no item. Read under the PSP's reconciliation lock (every money
    resolution takes it first), so two resolutions of one item count each other."""
    object_id = d.object_id if object_id is None else object_id
    if not object_id:
        return 0
    moved = (
        Discrepancy.objects.filter(psp=d.psp, object_id=object_id, moved_alone_currency=currency)
        .exclude(moved_alone=0).exclude(pk=d.pk).aggregate(total=Sum("moved_alone"))["total"]
    )  # fmt: skip
    return moved or 0


def four_eyes(
    *, amount: int, currency: str, approved: bool | int, user, counted: int | None = None,
    d: Discrepancy | None = None, earlier: str = "this discrepancy's earlier moves made without approval",
) -> None:
    """A money resolution moving more than the approval threshold of its currency
    (`approval_threshold`, minor units, absolute) needs a second user's approval
    (`services.approvals`): refused here, under the discrepancy's lock (and its PSP's reconciliation
    lock), where the amount is known, unless it is that approval running it.
    `approved` an amount (not a bool): the approval of that much runs it; what grew since it was
    asked fails the approval above the threshold, and under it is checked and counted as made alone.
    `counted`: what the threshold is measured against when more than `amount` (a suspense move with
    the earlier moves made alone).
    `d`: a resolution of the discrepancy: what the resolutions of the same item moved alone counts
    too (`moved_alone_on_item`: a large adjustment or write-off split over an item's discrepancies
    still needs a second user), and what this one moves alone is recorded on `d` (`moved_alone`; the
    caller saves it). `earlier`: what `counted` adds to `amount`, for the message.
    `user`: who moves it; made alone, it counts for the user's day too (`SingleHandedDay`, locked):
    what would take the user's total of the UTC day in `currency` past `daily_single_handed_limit`
    needs a second user as well."""
    threshold = approval_threshold(currency)
    if approved is True:
        return
    if approved is not False:
        if abs(amount) <= approved:
            return
        if abs(amount) > threshold:
            raise DiscrepancyNeedsApprovalError(
                f"This resolution now moves {abs(amount)} {currency} (minor units), more than the {approved} approved:"
                " it needs a new approval.", amount=abs(amount), currency=currency,
            )  # fmt: skip
        # grown past what was approved, not past the threshold: it runs only as one made alone would (the
        # item's sum and the user's day), and counts as made alone
    if d is not None:
        counted = abs(amount) + moved_alone_on_item(d, currency)
        earlier = f"{d.object_id}'s other resolutions moved without approval"
    total = max(abs(amount), counted or 0)
    if total > threshold:
        message = None
        if total > abs(amount):
            message = (f"This move of {abs(amount)} {currency} (minor units), with the {total - abs(amount)}"
                       f" {earlier}, moves {total}: above the approval threshold ({threshold}), it needs a second"
                       " user's approval.")  # fmt: skip
        raise DiscrepancyNeedsApprovalError(message, amount=abs(amount), currency=currency)
    if amount:
        today = _single_handed_today(user, currency)
        limit = daily_single_handed_limit(currency)
        if today.moved + abs(amount) > limit:
            raise DiscrepancyNeedsApprovalError(
                f"This move of {abs(amount)} {currency} (minor units), with the {today.moved} you moved without"
                f" approval today (UTC), moves {today.moved + abs(amount)}: above your daily limit ({limit}), it needs"
                " a second user's approval.", amount=abs(amount), currency=currency,
            )  # fmt: skip
        today.moved += abs(amount)
        today.save(update_fields=["moved", "updated_at"])
    if d is not None:
        d.moved_alone, d.moved_alone_currency = abs(amount), currency


def _post(*, reference: str, lines, kind: str, d: Discrepancy, user, reason: str) -> None:
    ledger_services.journal_post(
        reference=reference, lines=lines, occurred_at=timezone.now(), kind=kind,
        memo=f"discrepancy {d.pk}: {reason[:200]}",
        metadata={"discrepancy": d.pk, "run": d.run_id, "line": d.line_id, "by": user.get_username()},
    )  # fmt: skip


@transaction.atomic(durable=True)
def discrepancy_investigate(*, discrepancy_id: int, user, reason: str) -> Discrepancy:
    reason = _check(user, "investigate_discrepancy", reason)
    d = _scoped(_locked(discrepancy_id), user)
    if not can_proceed(d.mark_investigating):
        raise DiscrepancyStateError()
    d.mark_investigating(by=user.get_username(), reason=reason)
    d.save()
    return d


@transaction.atomic(durable=True)
def discrepancy_resolve(
    *, discrepancy_id: int, user, reason: str, adjustment: int = 0, currency: str | None = None
) -> Discrepancy:
    """`resolve_now` in a transaction of its own: an adjustment above the approval threshold is
    refused (DiscrepancyNeedsApprovalError; `discrepancy_request` asks for a second user instead)."""
    return resolve_now(discrepancy_id=discrepancy_id, user=user, reason=reason, adjustment=adjustment,
                       currency=currency, approved=False)  # fmt: skip


def resolve_now(
    *, discrepancy_id: int, user, reason: str, adjustment: int = 0, currency: str | None = None, approved: bool | int
) -> Discrepancy:
    """Resolve with a reason; a non-zero `adjustment` (minor units of `currency`, which must be the
    currency of the item when given) takes that much of the capture, refund or dispute the
    discrepancy names off the PSP receivable as PSP cost: `recon_adjustment:<id>` (idempotent by
    that reference). Only an item still receivable takes one, in its direction and at most what is
    left of it (DiscrepancyMoneyError otherwise): money the PSP reported is settled as reported."""
    reason = _check(user, "resolve_discrepancy", reason)
    if isinstance(adjustment, bool) or not isinstance(adjustment, int):
        raise InvalidRequestError("adjustment must be an integer in minor units.", param="adjustment")
    d = _scoped(_locked(discrepancy_id, money=bool(adjustment)), user)
    if not can_proceed(d.mark_resolved):
        raise DiscrepancyStateError()
    reference, item_currency = "", ""
    if adjustment:
        item_currency, left = _outstanding(d)
        if currency is not None and currency != item_currency:
            raise DiscrepancyMoneyError(f"Discrepancy {d.pk} is in {item_currency}, not {currency}.", param="currency")
        if not left:
            raise DiscrepancyMoneyError(
                f"Discrepancy {d.pk} ({d.get_kind_display()}) names no capture, refund or dispute still on the PSP"
                " receivable: an adjustment has nothing to take off (money the PSP reported: settle as reported).",
                param="adjustment",
            )
        if (adjustment > 0) != (left > 0) or abs(adjustment) > abs(left):
            raise DiscrepancyMoneyError(
                f"The adjustment of discrepancy {d.pk} must lie between 0 and {left} {item_currency} (what is still"
                f" receivable of {d.object_id}).", param="adjustment",
            )  # fmt: skip
        four_eyes(amount=adjustment, currency=item_currency, approved=approved, user=user, d=d)
        reference = f"recon_adjustment:{d.pk}"
        _post(reference=reference, lines=adjustment_lines(psp=d.psp, currency=item_currency, amount=adjustment),
              kind=JournalKind.ADJUSTMENT, d=d, user=user, reason=reason)  # fmt: skip
    d.mark_resolved(by=user.get_username(), reason=reason, adjustment_reference=reference, at=timezone.now(),
                    receivable_cleared=adjustment, cleared_currency=item_currency,
                    cleared_account=FEE_EXPENSE)  # fmt: skip
    d.save()
    return d


@transaction.atomic(durable=True)
def discrepancy_settle_as_reported(*, discrepancy_id: int, user, reason: str) -> Discrepancy:
    """`settle_as_reported_now` in a transaction of its own (above the approval threshold:
    DiscrepancyNeedsApprovalError, as `discrepancy_resolve`)."""
    return settle_as_reported_now(discrepancy_id=discrepancy_id, user=user, reason=reason, approved=False)


def settle_as_reported_now(*, discrepancy_id: int, user, reason: str, approved: bool | int) -> Discrepancy:
    """Resolve by booking the line as the PSP reported it (`recon_settle:<id>`, see
    `settle_as_reported_lines`): an amount or currency mismatch settles Payera's item (the
    receivable credited what is still owed of it, what earlier resolutions cleared of it given back
    to the accounts they debited, the gap to reconciliation differences; a currency mismatch books
    each currency apart); a line Payera does not know (missing in Payera, or a duplicate the PSP
    really paid) goes to suspense. Needs `resolve_discrepancy`."""
    reason = _check(user, "resolve_discrepancy", reason)
    d = _scoped(_locked(discrepancy_id, money=True), user)
    if not can_proceed(d.mark_resolved):
        raise DiscrepancyStateError()
    line = d.line
    if d.kind not in SETTLE_KINDS or line is None:
        raise DiscrepancyMoneyError(
            f"Discrepancy {d.pk} is a {d.get_kind_display().lower()}: only an amount or currency mismatch, a line"
            " missing in Payera or a duplicate line is settled as reported."
        )
    if line.journal_reference:
        raise DiscrepancyMoneyError(f"The line of discrepancy {d.pk} is already settled ({line.journal_reference}).")
    if line.net != line.gross - line.fee:
        raise DiscrepancyMoneyError(
            f"The line of discrepancy {d.pk} does not add up (net {line.net} is not gross {line.gross} - fee"
            f" {line.fee}): ask the PSP for a corrected report."
        )
    expected, item_currency, recovered, account = None, "", {}, ""
    if d.kind not in SUSPENSE_KINDS:
        item_currency, expected = _item(d)
        same = item_currency == line.currency
        if not expected or (d.kind == ReconOutcome.AMOUNT_MISMATCH) != same:
            raise DiscrepancyMoneyError(
                f"{d.object_id} is no longer on the PSP receivable (a report line settled it): resolve without"
                " money."
            )
        # what other resolutions cleared of the item comes back to the accounts they debited
        recovered = _recover_item(d, item_currency, expected > 0)
        account = DIFFERENCES
    lines = settle_as_reported_lines(psp=d.psp, currency=line.currency, gross=line.gross, fee=line.fee,
                                     net=line.net, expected=expected, item_currency=item_currency,
                                     recovered=recovered)  # fmt: skip
    # what it books, in each currency it moves: the line's gross in the line's currency, Payera's side
    # of it in the item's (a currency mismatch books both), or any larger leg of the journal in that
    # currency (a line's fee or net: a small gross with a large fee moves the fee); each currency is
    # held to its own threshold and daily limit, the item's with the item's other resolutions
    moves = {line.currency: abs(line.gross)}
    for currency, amount in ((item_currency, expected or 0), *((leg.account.currency, leg.amount) for leg in lines)):
        if amount:
            moves[currency] = max(moves.get(currency, 0), abs(amount))
    item_side = item_currency or line.currency
    # an approval is asked at one currency's amount; the line and the item it names do not change, so
    # an approval of a resolution in two currencies runs it as a whole
    approved = approved if len(moves) == 1 or approved is False else True
    for currency in sorted(moves):  # the user's rows of the day locked in one order: no deadlock between two
        four_eyes(amount=moves[currency], currency=currency, approved=approved, user=user,
                  d=d if currency == item_side else None)  # fmt: skip
    reference = f"recon_settle:{d.pk}" if lines else ""
    if lines:
        _post(reference=reference, lines=lines, kind=JournalKind.SETTLEMENT, d=d, user=user, reason=reason)
    # the item's whole gross counts as settled by this resolution (less what it gave back: the
    # clearings it recovered are recorded on their own discrepancies)
    d.mark_resolved(by=user.get_username(), reason=reason, adjustment_reference=reference, at=timezone.now(),
                    receivable_cleared=expected or 0, cleared_currency=item_currency,
                    cleared_account=account)  # fmt: skip
    d.save()
    return d


@transaction.atomic(durable=True)
def discrepancy_write_off(*, discrepancy_id: int, user, reason: str) -> Discrepancy:
    """`write_off_now` in a transaction of its own (above the approval threshold:
    DiscrepancyNeedsApprovalError, as `discrepancy_resolve`)."""
    return write_off_now(discrepancy_id=discrepancy_id, user=user, reason=reason, approved=False)


def write_off_now(*, discrepancy_id: int, user, reason: str, approved: bool | int) -> Discrepancy:
    """Close it: the PSP will never settle it. What the discrepancy names that is still on the PSP
    receivable (a capture, refund or dispute: missing at PSP, amount or currency mismatch) is
    written off to reconciliation differences (`recon_write_off:<id>`); a report line is not booked
    (a duplicate or unknown line the PSP did not pay; a fee difference that was agreed)."""
    reason = _check(user, "write_off_discrepancy", reason)
    d = _scoped(_locked(discrepancy_id, money=True), user)
    if not can_proceed(d.mark_written_off):
        raise DiscrepancyStateError()
    item_currency, left = _outstanding(d)
    reference = ""
    if left:
        four_eyes(amount=left, currency=item_currency, approved=approved, user=user, d=d)
        reference = f"recon_write_off:{d.pk}"
        _post(reference=reference, lines=write_off_lines(psp=d.psp, currency=item_currency, amount=left),
              kind=JournalKind.ADJUSTMENT, d=d, user=user, reason=reason)  # fmt: skip
    d.mark_written_off(by=user.get_username(), reason=reason, at=timezone.now(), adjustment_reference=reference,
                       receivable_cleared=left, cleared_currency=item_currency,
                       cleared_account=DIFFERENCES)  # fmt: skip
    d.save()
    return d


def discrepancies_settled_resolve(*, run_id: str, psp: str) -> int:
    """A later report settles what an earlier one lacked: each open or investigating "missing at
    PSP" discrepancy whose capture, refund or won dispute a posted line of run `run_id` names (a
    reversal line for a dispute) is resolved through
    the state machine (audited), by `reconciliation:<run>`, with the line as the reason, and no
    adjustment (the line's settlement journal moved the money). Runs inside the import's
    transaction; returns how many it resolved."""
    from django.db.models import Exists, OuterRef

    # a chargeback line names its dispute too, but only the reversal line settles a won dispute's
    # missing reversal (no "missing at PSP" is ever opened for a chargeback); a refund line and its
    # reversal line name the same refund: a line settles only the item of its direction (a missing
    # reversal, +, is not settled by the refund's line, -, nor the other way round)
    lines = StatementLine.objects.filter(run_id=run_id, psp=psp).exclude(journal_reference="").exclude(
        kind=SettlementKind.CHARGEBACK
    )
    settled = lines.filter(object_id=OuterRef("object_id"))
    waiting = (
        Discrepancy.objects.select_for_update()
        .filter(psp=psp, kind=ReconOutcome.MISSING_AT_PSP, status__in=[DiscrepancyStatus.OPEN,
                DiscrepancyStatus.INVESTIGATING])
        .filter(Q(Exists(settled.filter(gross__gt=0)), payera_amount__gt=0)
                | Q(Exists(settled.filter(gross__lt=0)), payera_amount__lt=0))
        .order_by("pk")
    )  # fmt: skip
    by = f"reconciliation:{run_id}"
    now = timezone.now()
    resolved = 0
    for d in waiting:
        same_sign = "gross__gt" if (d.payera_amount or 0) > 0 else "gross__lt"
        line = lines.filter(object_id=d.object_id, **{same_sign: 0}).order_by("line_number").first()
        if line is None or not can_proceed(d.mark_resolved):
            continue
        reason = (f"settled by a later report: run {run_id} line {line.line_number} ({line.outcome}, gross"
                  f" {line.gross} {line.currency}, journal {line.journal_reference})")  # fmt: skip
        d.mark_resolved(by=by, reason=reason, adjustment_reference="", at=now)
        d.save()
        resolved += 1
    return resolved


def recover_sql(where: str, *, lock: bool = False) -> str:
    """lines_recover's SELECT; its parameters: `where`'s, then the PSP."""
    dsc, lines = Discrepancy._meta.db_table, StatementLine._meta.db_table
    # table names and the caller's SQL over the lines; values are bound
    return f"""
SELECT d.id, d.cleared_account, d.receivable_cleared - d.receivable_recovered, p.currency, p.journal_reference
FROM {dsc} d JOIN {lines} p ON p.id = (
  SELECT MIN(l.id) FROM {lines} l WHERE l.object_id = d.object_id AND l.psp = d.psp
     AND l.currency = d.cleared_currency AND l.journal_reference <> '' AND l.gross <> 0
     AND (l.gross > 0) = (d.receivable_cleared > 0) AND {where})
WHERE d.psp = %s AND NOT (d.receivable_cleared = 0) AND d.receivable_recovered <> d.receivable_cleared
  AND d.object_id <> ''
ORDER BY d.id{" FOR UPDATE OF d" if lock else ""}"""  # noqa: S608


def lines_recover(*, psp: str, where: str, params: list) -> dict[str, dict[tuple[str, str], int]]:
    """Report lines of `psp` that settle (posted: a journal reference) an item finance's resolutions
    already cleared: per journal reference the lines name, (cleared account, currency) -> what is
    given back to that account (the item's sign). Each such discrepancy is given back in full, once,
    by the first line (lowest id) satisfying `where` (SQL over the lines, alias l, its parameters
    `params`) in its item's direction and currency; its `receivable_recovered` is set to its
    `receivable_cleared` (the receivable check and aging count the difference). The import (its
    run's lines) and the late heal (its lines) call it in the transaction that posts their journals.
    Set-based: one SELECT that starts from the few discrepancies that cleared something (a partial
    index holds only those) and looks up each one's item in the lines' object index, a save
    (audited) per discrepancy given back; nothing is read per line, and nothing at all in the usual
    case (no clearing)."""
    sql = recover_sql(where, lock=connection.vendor == "postgresql")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, psp])
        rows = cursor.fetchall()
        if not rows:
            return {}
    # a save each (audited): the few discrepancies that cleared this item, not the lines
    for other in Discrepancy.objects.filter(pk__in=[row[0] for row in rows]).order_by("pk"):
        other.receivable_recovered = other.receivable_cleared
        other.save(update_fields=["receivable_recovered", "updated_at"])
    out: dict[str, dict[tuple[str, str], int]] = {}
    for _, account, amount, currency, journal in rows:
        per = out.setdefault(journal, {})
        key = (account or DIFFERENCES, currency)
        per[key] = per.get(key, 0) + int(amount)
    return out
