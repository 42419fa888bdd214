"""Payouts: from a merchant's available balance to its bank (docs/settlement.md).

pending -> in_transit -> paid | failed, and paid -> failed (returned by the bank). Creating a payout
moves available -> payouts in transit (`payout:<id>`); paid clears in transit against bank cash
(`payout_paid:<id>`); failed returns it to available (`payout_failed:<id>`); a paid payout the bank
sends back returns bank cash to available (`payout_returned:<id>`). One payout per merchant,
currency and day: running the payout run twice pays once. Each service locks, checks, transitions,
records its event and posts last, in one durable transaction.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from ledger.errors import AccountNotFoundError
from ledger.types import MERCHANT_AVAILABLE, Accounts, JournalKind, JournalRequest
from payera.core.errors import InvalidRequestError, NotFoundError
from payera.core.money import currency_normalize, per_currency_amount
from payera.events.services import event_record
from payera.merchants.models import Merchant, MerchantStatus
from payera.merchants.services import merchant_lock
from payera.secrets import services as secrets
from reconciliation.bank_names import holder_name_problem
from reconciliation.errors import BankAccountInvalidError, PayoutHeldError, PayoutNotFoundError, PayoutStateError
from reconciliation.models import MerchantPayoutSettings, Payout, PayoutStatus, SettlementRun, SettlementRunStatus
from reconciliation.objects import payout_object
from reconciliation.postings import (
    payout_amount,
    payout_create_lines,
    payout_failed_lines,
    payout_paid_lines,
    payout_returned_lines,
    reserve_kept,
)
from reconciliation.services.locks import merchant_payout_lock, payout_lock

logger = logging.getLogger("payera.reconciliation")

BANK_ACCOUNT_KEY = "payout-bank-accounts"
BANK_ACCOUNT_FINGERPRINT_KEY = "payout-bank-account-fingerprints"
_ACCOUNT_RE = re.compile(r"^[A-Z0-9]{8,34}$")


def mask_bank_account(account: str) -> str:
    """`DE89370400440532013000` -> `DE89…3000`: the country and check digits and the last four."""
    return f"{account[:4]}…{account[-4:]}"


def bank_account_fingerprint(account: str) -> str:
    """Which account this is (a keyed hash of the normalized clear account), without revealing it:
    two accounts with the same masked form have different fingerprints."""
    return secrets.keyed_hash(key=BANK_ACCOUNT_FINGERPRINT_KEY, data=account.encode())


@transaction.atomic(durable=True)
def payout_settings_update(
    *,
    merchant_id: str,
    minimum_payout_amounts: Mapping[str, int | None] | None = None,
    minimum_payout_default: bool = False,
    reserve_bps: int | None = None,
    payouts_enabled: bool | None = None,
    bank_account: str | None = None,
    bank_account_holder: str | None = None,
) -> MerchantPayoutSettings:
    """Change a merchant's payout settings. `minimum_payout_amounts` sets the merchant's own
    minimum per currency, each in that currency's minor units (`{"EUR": 5000, "JPY": 8000}`; a
    currency given None goes back to its default; currencies not given keep theirs);
    `minimum_payout_default` drops them all, back to each currency's default. The bank account is
    encrypted through the secrets backend (fail closed); only its masked form and its keyed
    fingerprint are stored in clear. The holder name is trimmed and must be one line of printable
    text (reconciliation.bank_names: no line breaks, tabs or control characters)."""
    if not Merchant.objects.filter(pk=merchant_id).exists():
        raise NotFoundError("No such merchant.", param="merchant")
    minimums = _minimums_checked(minimum_payout_amounts or {})
    if reserve_bps is not None and not 0 <= reserve_bps <= 10000:
        raise InvalidRequestError("reserve_bps must be 0-10000.", param="reserve_bps")
    holder = (bank_account_holder or "").strip()
    problem = holder_name_problem(holder)
    if problem:
        raise BankAccountInvalidError(problem, param="bank_account_holder")
    ciphertext = masked = fingerprint = None
    if bank_account is not None:
        account = re.sub(r"[\s-]", "", bank_account).upper()
        if not _ACCOUNT_RE.match(account):
            raise BankAccountInvalidError("The bank account must be 8-34 letters and digits.", param="bank_account")
        plaintext = json.dumps({"account": account, "holder": holder}).encode()
        ciphertext, fingerprint = secrets.encrypt_and_hash(
            key=BANK_ACCOUNT_KEY, plaintext=plaintext, hash_key=BANK_ACCOUNT_FINGERPRINT_KEY, data=account.encode()
        )
        masked = mask_bank_account(account)
    settings_row = merchant_payout_lock(merchant_id)
    if minimum_payout_default:
        settings_row.minimum_payout_amounts = {}
    if minimums:
        merged = {**settings_row.minimum_payout_amounts, **minimums}
        settings_row.minimum_payout_amounts = {c: a for c, a in sorted(merged.items()) if a is not None}
    if reserve_bps is not None:
        settings_row.reserve_bps = reserve_bps
    if payouts_enabled is not None:
        settings_row.payouts_enabled = payouts_enabled
    if ciphertext is not None:
        settings_row.bank_account_ciphertext = ciphertext
        settings_row.bank_account_masked = masked
        settings_row.bank_account_fingerprint = fingerprint
    settings_row.save()
    return settings_row


def _minimums_checked(given: Mapping[str, int | None]) -> dict[str, int | None]:
    """Upper-case payable ISO 4217 codes to whole minor units >= 1 (None: back to the default)."""
    if not isinstance(given, Mapping):
        raise InvalidRequestError("minimum_payout_amounts is a mapping of currencies to minor units.",
                                  param="minimum_payout_amounts")
    out: dict[str, int | None] = {}
    for code, amount in given.items():
        currency = currency_normalize(code, param="minimum_payout_amounts")
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int) or amount < 1):
            raise InvalidRequestError(f"minimum_payout_amounts[{currency}] must be an integer >= 1 (minor units).",
                                      param="minimum_payout_amounts")
        out[currency] = amount
    return out


def payout_minimum(settings_row: MerchantPayoutSettings, currency: str) -> int:
    """The least payout in `currency`'s minor units: the merchant's own minimum for that currency
    when it named one, else the currency's default (`RECONCILIATION_PAYOUT_MINIMUM`,
    payera.core.money.per_currency_amount). Never another currency's number."""
    own = (settings_row.minimum_payout_amounts or {}).get(currency.upper())
    if isinstance(own, int) and not isinstance(own, bool) and own >= 1:
        return own
    table = getattr(settings, "RECONCILIATION_PAYOUT_MINIMUM", {})
    return per_currency_amount(table, currency, setting="RECONCILIATION_PAYOUT_MINIMUM")


def payout_bank_account_reveal(*, merchant_id: str) -> dict:
    """The clear bank account (for the bank transfer itself); never logged or shown."""
    row = MerchantPayoutSettings.objects.filter(merchant_id=merchant_id).first()
    if row is None or not row.bank_account_ciphertext:
        raise BankAccountInvalidError("The merchant has no bank account.", param="bank_account")
    return json.loads(secrets.decrypt(key=BANK_ACCOUNT_KEY, ciphertext=row.bank_account_ciphertext))


@dataclass(frozen=True, slots=True)
class PayoutOutcome:
    merchant_id: str
    currency: str
    payout_id: str | None
    amount: int
    created: bool
    # created | exists | below_minimum | disabled | merchant_suspended | no_bank_account | nothing_available
    reason: str

    def as_dict(self) -> dict:
        return {
            "merchant": self.merchant_id,
            "currency": self.currency,
            "payout": self.payout_id,
            "amount": self.amount,
            "created": self.created,
            "reason": self.reason,
        }


def _available_currencies(merchant_id: str) -> list[str]:
    return sorted(
        a.currency for a in ledger_selectors.account_list(owner=merchant_id) if a.code == MERCHANT_AVAILABLE
    )


def payout_run(*, merchant_id: str | None = None, now: datetime | None = None) -> list[PayoutOutcome]:
    """Create today's payout for every merchant (or one) and currency with enough available."""
    now = now or timezone.now()
    merchants = Merchant.objects.order_by("id")
    if merchant_id is not None:
        merchants = merchants.filter(pk=merchant_id)
    outcomes = []
    for merchant_pk in merchants.values_list("pk", flat=True):
        for currency in _available_currencies(merchant_pk):
            outcomes.append(payout_create(merchant_id=merchant_pk, currency=currency, now=now))
    return outcomes


def _available(merchant_id: str, currency: str) -> int:
    try:
        balance = ledger_selectors.account_balance(key=Accounts.merchant_available(merchant_id, currency))
    except AccountNotFoundError:
        return 0
    return -balance.posted - balance.debits_pending


@transaction.atomic(durable=True)
def payout_create(*, merchant_id: str, currency: str, now: datetime | None = None) -> PayoutOutcome:
    """Today's payout of `currency` for the merchant: available minus the reserve kept back, if
    at least the minimum. A second call the same day returns the first payout."""
    now = now or timezone.now()
    payout_date = now.astimezone(UTC).date()
    settings_row = merchant_payout_lock(merchant_id)
    existing = Payout.objects.filter(merchant_id=merchant_id, currency=currency, payout_date=payout_date).first()
    if existing is not None:
        return PayoutOutcome(merchant_id, currency, existing.id, existing.amount, False, "exists")
    if not settings_row.payouts_enabled:
        return PayoutOutcome(merchant_id, currency, None, 0, False, "disabled")
    if Merchant.objects.filter(pk=merchant_id, status=MerchantStatus.SUSPENDED).exists():
        return PayoutOutcome(merchant_id, currency, None, 0, False, "merchant_suspended")  # held, not lost
    if not settings_row.bank_account_ciphertext:
        return PayoutOutcome(merchant_id, currency, None, 0, False, "no_bank_account")
    available = _available(merchant_id, currency)
    if available <= 0:
        return PayoutOutcome(merchant_id, currency, None, 0, False, "nothing_available")
    amount = payout_amount(
        available=available, reserve_bps=settings_row.reserve_bps, minimum=payout_minimum(settings_row, currency)
    )
    if amount == 0:
        return PayoutOutcome(merchant_id, currency, None, 0, False, "below_minimum")
    payout = Payout(
        merchant_id=merchant_id,
        currency=currency,
        amount=amount,
        payout_date=payout_date,
        available_before=available,
        reserve_kept=reserve_kept(available=available, reserve_bps=settings_row.reserve_bps),
        bank_account_masked=settings_row.bank_account_masked,
        bank_account_fingerprint=settings_row.bank_account_fingerprint,
        # created_at: stamped by its INSERT (CommitStampField), whatever `now` is; the payout's
        # business time is its journal's occurred_at (`now`) and its payout_date
    )
    payout.journal_reference = f"payout:{payout.id}"
    payout.save()
    SettlementRun.objects.filter(
        merchant_id=merchant_id, currency=currency, status=SettlementRunStatus.SETTLED, payout__isnull=True
    ).update(payout=payout)
    event_record(merchant_id=merchant_id, type="payout.created", data=payout_object(payout))
    ledger_services.journal_post_many(
        [
            JournalRequest(
                reference=payout.journal_reference,
                lines=payout_create_lines(merchant_id=merchant_id, currency=currency, amount=amount),
                occurred_at=now,
                kind=JournalKind.PAYOUT,
                memo=f"payout {payout.id}",
                metadata={"payout": payout.id},
            )
        ]
    )
    return PayoutOutcome(merchant_id, currency, payout.id, amount, True, "created")


def _locked(payout_id: str) -> Payout:
    payout = payout_lock(payout_id)
    if payout is None:
        raise PayoutNotFoundError()
    return payout


@transaction.atomic(durable=True)
def payout_mark_in_transit(*, payout_id: str, now: datetime | None = None) -> Payout:
    """The payout file went to the bank. A repeat is a no-op. The merchant is locked first (as
    `merchant_suspend` and the bank file do): a suspended merchant's pending payout is held
    (`PayoutHeldError`), whether the suspension came before the caller chose it or while it ran."""
    merchant_id = Payout.objects.filter(pk=payout_id).values_list("merchant_id", flat=True).first()
    if merchant_id is None:
        raise PayoutNotFoundError()
    merchant = merchant_lock(merchant_id)
    payout = _locked(payout_id)
    if payout.status == PayoutStatus.IN_TRANSIT:
        return payout
    if merchant.status == MerchantStatus.SUSPENDED:
        raise PayoutHeldError(f"Payout {payout.id} is held: merchant {merchant_id} is suspended.")
    if not can_proceed(payout.mark_in_transit):
        raise PayoutStateError(f"Payout {payout.id} is {payout.status}; it can not go in transit.")
    payout.mark_in_transit(at=now or timezone.now())
    payout.save()
    return payout


@transaction.atomic(durable=True)
def payout_mark_paid(*, payout_id: str, now: datetime | None = None) -> Payout:
    """The bank confirmed the transfer: in transit -> bank cash, `payout.paid`. A repeat is a no-op."""
    now = now or timezone.now()
    payout = _locked(payout_id)
    if payout.status == PayoutStatus.PAID:
        return payout
    if not can_proceed(payout.mark_paid):
        raise PayoutStateError(f"Payout {payout.id} is {payout.status}; only a payout in transit can be paid.")
    payout.mark_paid(at=now)
    payout.save()
    event_record(merchant_id=payout.merchant_id, type="payout.paid", data=payout_object(payout))
    ledger_services.journal_post_many(
        [
            JournalRequest(
                reference=f"payout_paid:{payout.id}",
                lines=payout_paid_lines(currency=payout.currency, amount=payout.amount),
                occurred_at=now,
                kind=JournalKind.PAYOUT,
                memo=f"payout {payout.id} paid",
                metadata={"payout": payout.id},
            )
        ]
    )
    return payout


@transaction.atomic(durable=True)
def payout_mark_failed(*, payout_id: str, reason: str = "", now: datetime | None = None) -> Payout:
    """The bank refused or returned it before confirming it (pending or in transit; a paid payout it
    sends back later is `payout_mark_returned`): available again, `payout.failed`. Its
    settlement runs are released, so the next payout (and its statement) carries them.

    The merchant's payout lock is taken first (settings row, then payout: the order of
    `payout_create`): a payout being created meanwhile has read available without this money, so it
    must not claim these runs either; it finishes first and the runs go with the payout after it."""
    now = now or timezone.now()
    payout = _locked_with_merchant(payout_id)
    if payout.status == PayoutStatus.FAILED:
        return payout
    if not can_proceed(payout.mark_failed):
        raise PayoutStateError(f"Payout {payout.id} is {payout.status}; it can not fail.")
    payout.mark_failed(at=now, reason=reason or "failed")
    return _money_back(payout, now=now, reference=f"payout_failed:{payout.id}", memo=f"payout {payout.id} failed",
                       lines=payout_failed_lines(merchant_id=payout.merchant_id, currency=payout.currency,
                                                 amount=payout.amount))


@transaction.atomic(durable=True)
def payout_mark_returned(*, payout_id: str, reason: str = "", now: datetime | None = None) -> Payout:
    """The bank paid it, then sent it back days later (closed account, wrong IBAN or name): paid ->
    failed, `payout.failed` (the event merchants already handle for a failure; `paid_at` stays set),
    and the money goes back to the merchant's available balance (bank cash -> available,
    `payout_returned:<id>`, once). Its settlement runs are released to the next payout, as a failure's.

    Locks as `payout_mark_failed` does (the merchant's payout lock, then the payout: the order of
    `payout_create`): a payout being created meanwhile finishes first, without this money or its
    runs. A repeat is a no-op; a payout that never was paid can not be returned (`PayoutStateError`)."""
    now = now or timezone.now()
    payout = _locked_with_merchant(payout_id)
    if payout.status == PayoutStatus.FAILED and payout.paid_at is not None:
        return payout  # returned already
    if not can_proceed(payout.mark_returned):
        raise PayoutStateError(f"Payout {payout.id} is {payout.status}; only a paid payout can be returned.")
    payout.mark_returned(at=now, reason=reason or "returned")
    return _money_back(payout, now=now, reference=f"payout_returned:{payout.id}",
                       memo=f"payout {payout.id} returned by the bank",
                       lines=payout_returned_lines(merchant_id=payout.merchant_id, currency=payout.currency,
                                                   amount=payout.amount))


def _locked_with_merchant(payout_id: str) -> Payout:
    """The payout, locked after its merchant's payout lock (the order of `payout_create`)."""
    merchant_id = Payout.objects.filter(pk=payout_id).values_list("merchant_id", flat=True).first()
    if merchant_id is None:
        raise PayoutNotFoundError()
    merchant_payout_lock(merchant_id)
    return _locked(payout_id)


def _money_back(payout: Payout, *, now: datetime, reference: str, memo: str, lines) -> Payout:
    """A failed or returned payout (its transition made, not saved): saved, its settlement runs
    released to the next payout, `payout.failed` sent and its amount posted back to available."""
    payout.save()
    SettlementRun.objects.filter(payout=payout).update(payout=None)
    event_record(merchant_id=payout.merchant_id, type="payout.failed", data=payout_object(payout))
    ledger_services.journal_post_many([
        JournalRequest(reference=reference, lines=lines, occurred_at=now, kind=JournalKind.PAYOUT, memo=memo,
                       metadata={"payout": payout.id})
    ])
    return payout


def _pending(merchant_id: str | None):
    qs = Payout.objects.filter(status=PayoutStatus.PENDING).order_by("created_at", "id")
    return qs if merchant_id is None else qs.filter(merchant_id=merchant_id)


def _suspended_ids():
    return Merchant.objects.filter(status=MerchantStatus.SUSPENDED).values("pk")


def payouts_send(*, merchant_id: str | None = None, now: datetime | None = None) -> list[Payout]:
    """Every pending payout goes in transit (the bank file is written from the result), except those
    of a suspended merchant: held pending (`payouts_held`) until it is reinstated."""
    sent = []
    for pk in _pending(merchant_id).exclude(merchant_id__in=_suspended_ids()).values_list("pk", flat=True):
        try:
            sent.append(payout_mark_in_transit(payout_id=pk, now=now))
        except PayoutHeldError:  # its merchant was suspended while the run went on: held, still pending
            logger.warning("payout %s held: its merchant was suspended during the send", pk)
    return sent


def payouts_held(*, merchant_id: str | None = None) -> list[Payout]:
    """Pending payouts of suspended merchants (created before the suspension): neither sent nor put
    in a bank file while it lasts; the operator sees them in `run_payouts` and the admin."""
    return list(_pending(merchant_id).filter(merchant_id__in=_suspended_ids()))
