"""The payout bank file: what the bank needs to execute each payout (clear account, holder name,
amount, the payout id as reference), for finance only, audited payout by payout.

One door for the clear accounts of a file: `payout_bank_file_export` checks the permission
(`reconciliation.export_bank_file_payout`, finance) and the staff member's merchants (all or
nothing: a file with another merchant's payout is refused whole), reveals each merchant's account
once through `payout_bank_account_reveal`, refuses a file the bank could not execute (no holder
name, an account other than the one the payout was created for, by its keyed fingerprint, a payout
paid or failed), and records one `backoffice.StaffAction` per payout (who, which payout, why,
when). Payouts of a suspended merchant are held out of the file (`BankFile.held`, audited as
refused, left as they are: pending ones stay pending) and go in a later file once the merchant is
reinstated; a selection of held payouts only is refused. Nothing here is logged: the file goes to
the caller only (docs/settlement.md, "Bank file").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone

from payera.backoffice.models import StaffActionOutcome
from payera.backoffice.services import staff_action_record, staff_reason_check
from payera.core.errors import InvalidRequestError
from payera.merchants.models import Merchant, MerchantStatus
from payera.merchants.services import merchant_lock
from payera.staff.access import staff_can_access_merchant
from reconciliation.bank_names import holder_name_one_line
from reconciliation.errors import (
    BankAccountInvalidError,
    PayoutBankFilePermissionError,
    PayoutHeldError,
    PayoutNotFoundError,
    PayoutStateError,
)
from reconciliation.exports import payout_bank_file_csv
from reconciliation.models import MerchantPayoutSettings, Payout, PayoutStatus
from reconciliation.services.locks import payout_lock
from reconciliation.services.payouts import bank_account_fingerprint, mask_bank_account, payout_bank_account_reveal

BANK_FILE_PERMISSION = "reconciliation.export_bank_file_payout"
BANK_FILE_ACTION = "reconciliation.export_bank_file"
SENDABLE = (PayoutStatus.PENDING, PayoutStatus.IN_TRANSIT)  # in transit: the file again (a lost download)


@dataclass(frozen=True, slots=True)
class HeldPayout:
    """A selected payout kept out of the file, and why (`merchant_suspended`)."""

    payout_id: str
    merchant_id: str
    reason: str = "merchant_suspended"

    def __str__(self) -> str:
        return f"{self.payout_id} (merchant {self.merchant_id} suspended)"


@dataclass(frozen=True, slots=True)
class BankFile:
    content: str  # clear accounts: hand it to the bank, never log or store it
    filename: str
    payout_ids: tuple[str, ...]
    held: tuple[HeldPayout, ...] = ()  # selected, not in the file: tell the operator


def _suspended(merchant_ids) -> set[str]:
    return set(
        Merchant.objects.filter(pk__in=list(merchant_ids), status=MerchantStatus.SUSPENDED).values_list("pk", flat=True)
    )


def payout_bank_file_export(*, user, payout_ids: Sequence[str], reason: str, now: datetime | None = None) -> BankFile:
    """The bank file of these payouts (oldest first), or a refusal (nothing revealed, nothing
    recorded). `reason`: why (a ticket, the day's batch), kept with each payout's audit row."""
    now = now or timezone.now()
    if not (user is not None and user.is_active and user.is_staff and user.has_perm(BANK_FILE_PERMISSION)):
        raise PayoutBankFilePermissionError()
    wanted = sorted(set(payout_ids))
    if not wanted:
        raise InvalidRequestError("No payouts selected.", param="payouts")
    reason = staff_reason_check(reason)  # revealing bank accounts: the back office's minimum, whoever calls
    payouts = list(Payout.objects.filter(pk__in=wanted).order_by("created_at", "id"))
    if len(payouts) != len(wanted):
        raise PayoutNotFoundError()
    others = [p.id for p in payouts if not staff_can_access_merchant(user, p.merchant_id)]
    if others:
        raise PayoutBankFilePermissionError(f"Not your merchants' payouts: {', '.join(others)}.")
    done = [f"{p.id} ({p.status})" for p in payouts if p.status not in SENDABLE]
    if done:
        raise PayoutStateError(f"Only pending or in-transit payouts go in a bank file: {', '.join(done)}.")
    # a suspended merchant is paid nothing (payout_create holds new payouts): its payouts created
    # before the suspension stay out of the file too, and go in one once it is reinstated
    suspended = _suspended({p.merchant_id for p in payouts})
    held = tuple(HeldPayout(p.id, p.merchant_id) for p in payouts if p.merchant_id in suspended)
    payouts = [p for p in payouts if p.merchant_id not in suspended]
    if not payouts:
        raise PayoutHeldError(
            f"No bank file: every selected payout is held, {', '.join(map(str, held))}; "
            "they go in a file once the merchant is reinstated."
        )
    accounts = {}
    for merchant_id in sorted({p.merchant_id for p in payouts}):
        account = payout_bank_account_reveal(merchant_id=merchant_id)
        # a name stored before it was checked: one line, no control characters (docs/settlement.md)
        account["holder"] = holder_name_one_line(account.get("holder"))
        if not account["holder"]:
            raise BankAccountInvalidError(
                f"Merchant {merchant_id} has no account holder name: the bank can not execute its payouts.",
                param="bank_account_holder",
            )
        accounts[merchant_id] = account
    fingerprints = {m: bank_account_fingerprint(a["account"]) for m, a in accounts.items()}
    since = set(
        MerchantPayoutSettings.objects.filter(merchant_id__in=list(accounts))
        .exclude(bank_account_fingerprint="")
        .values_list("merchant_id", flat=True)
    )
    for p in payouts:
        if not _same_account(
            p,
            fingerprint=fingerprints[p.merchant_id],
            masked=mask_bank_account(accounts[p.merchant_id]["account"]),
            set_since_fingerprints=p.merchant_id in since,
        ):
            raise BankAccountInvalidError(
                f"The bank account of merchant {p.merchant_id} changed after payout {p.id} was created "
                f"(for {p.bank_account_masked}): fail the payout and pay it again.",
                param="bank_account",
            )
    content = payout_bank_file_csv(payouts, accounts, on=now.astimezone(UTC).date())
    bank_file = BankFile(content, f"bank-file-{now:%Y%m%d%H%M%S}.csv", tuple(p.id for p in payouts), held)
    _record(user=user, payouts=payouts, held=held, reason=reason, filename=bank_file.filename, now=now)
    return bank_file


def _same_account(payout: Payout, *, fingerprint: str, masked: str, set_since_fingerprints: bool) -> bool:
    """Is the merchant's account now the one the payout was created for? By the account's keyed
    fingerprint, which the payout keeps from its creation: the masked form (country, check digits,
    last four) is shared by other accounts. A payout created before fingerprints were kept has
    none: if the merchant's account was set since (its settings carry a fingerprint), it may be
    another account and the payout is refused; otherwise only the masked form can be compared."""
    if payout.bank_account_fingerprint:
        return payout.bank_account_fingerprint == fingerprint
    return not set_since_fingerprints and payout.bank_account_masked == masked


@transaction.atomic(durable=True)
def _record(*, user, payouts: list[Payout], held: tuple[HeldPayout, ...], reason: str, filename: str,
            now: datetime) -> None:
    """Audit each payout of the file and put the pending ones in transit: a payout in a file the
    bank may execute is no longer `pending`, so it can not be failed back to available as if it had
    never been sent (only the bank's refusal or return fails a payout in transit). The file's
    merchants are locked first (as `merchant_suspend` does): one suspended since the file was
    built refuses it whole (nothing recorded, the file not handed out); one suspended after this
    commits finds its payouts already in transit. Held payouts are audited as refused."""
    merchant_ids = sorted({p.merchant_id for p in payouts})
    for merchant_id in merchant_ids:
        merchant_lock(merchant_id)
    late = _suspended(merchant_ids)
    if late:
        raise PayoutHeldError(
            f"No bank file: merchant {', '.join(sorted(late))} was suspended while the file was built; export again."
        )
    for p in payouts:
        locked = payout_lock(p.id)  # in the file's order: oldest first
        if locked.status == PayoutStatus.PENDING:
            locked.mark_in_transit(at=now)
            locked.save()
        elif locked.status != PayoutStatus.IN_TRANSIT:  # failed or paid since the check: no file
            raise PayoutStateError(f"Only pending or in-transit payouts go in a bank file: {p.id} ({locked.status}).")
        staff_action_record(
            user=user,
            action=BANK_FILE_ACTION,
            object_type=Payout._meta.label_lower,
            object_id=p.id,
            merchant_id=p.merchant_id,
            reason=reason,
            outcome=StaffActionOutcome.DONE,
            detail=f"in bank file {filename} ({len(payouts)} payouts): {p.amount} {p.currency} to "
            f"{p.bank_account_masked}",
        )
    for h in held:
        staff_action_record(
            user=user,
            action=BANK_FILE_ACTION,
            object_type=Payout._meta.label_lower,
            object_id=h.payout_id,
            merchant_id=h.merchant_id,
            reason=reason,
            outcome=StaffActionOutcome.REFUSED,
            detail=f"held out of bank file {filename}: merchant suspended; it goes in a file once reinstated",
        )
