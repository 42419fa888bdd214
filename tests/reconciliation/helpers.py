"""Capture-shaped postings through ledger.services, as payments will post them (the payments code
is not merged yet): capture `capture:<attempt>` debits the PSP receivable gross and credits
merchant pending gross - fee and fee revenue fee; a refund or chargeback goes the other way."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from ledger.errors import AccountNotFoundError
from ledger.types import Accounts, JournalKind, PostingLine


@dataclass(frozen=True)
class Posted:
    reference: str
    net: int  # what the merchant is owed by it (negative for refunds and chargebacks)
    fee: int = 0


def post_capture(merchant_id: str, *, gross: int, fee: int, at: datetime, currency: str = "EUR",
                 connector: str = "alpha") -> Posted:
    reference = f"capture:att_{uuid.uuid4().hex[:20]}"
    ledger_services.journal_post(
        reference=reference,
        lines=(
            PostingLine.debit(Accounts.psp_receivable(connector, currency), gross),
            PostingLine.credit(Accounts.merchant_pending(merchant_id, currency), gross - fee),
            PostingLine.credit(Accounts.fee_revenue(currency), fee),
        ),
        occurred_at=at,
        kind=JournalKind.CAPTURE,
    )
    return Posted(reference, gross - fee, fee)


def post_refund(merchant_id: str, *, amount: int, at: datetime, currency: str = "EUR", connector: str = "alpha",
                kind: str = JournalKind.REFUND) -> Posted:
    reference = f"{kind}:re_{uuid.uuid4().hex[:20]}"
    ledger_services.journal_post(
        reference=reference,
        lines=(
            PostingLine.debit(Accounts.merchant_pending(merchant_id, currency), amount),
            PostingLine.credit(Accounts.psp_receivable(connector, currency), amount),
        ),
        occurred_at=at,
        kind=kind,
    )
    return Posted(reference, -amount)


def owed(key) -> int:
    """What a merchant liability account owes (credit balance, positive); 0 if never created."""
    try:
        return -ledger_selectors.account_balance(key=key).posted
    except AccountNotFoundError:
        return 0


def asset(key) -> int:
    try:
        return ledger_selectors.account_balance(key=key).posted
    except AccountNotFoundError:
        return 0


def pending(merchant_id: str, currency: str = "EUR") -> int:
    return owed(Accounts.merchant_pending(merchant_id, currency))


def available(merchant_id: str, currency: str = "EUR") -> int:
    return owed(Accounts.merchant_available(merchant_id, currency))


BANK_ACCOUNT = "DE89370400440532013000"


def make_payout(merchant, *, gross: int = 10_000, fee: int = 300, currency: str = "EUR", now: datetime | None = None,
                reserve_bps: int = 0, minimum: int = 100):
    """A merchant with a bank account, a capture old enough to settle, settled, and paid out: the Payout."""
    from django.utils import timezone

    from reconciliation.models import Payout
    from reconciliation.services import payout_create, payout_settings_update, settlement_run

    now = now or timezone.now()
    payout_settings_update(merchant_id=merchant.id, bank_account=BANK_ACCOUNT, bank_account_holder="Shop GmbH",
                           reserve_bps=reserve_bps, minimum_payout_amounts={currency: minimum})
    post_capture(merchant.id, gross=gross, fee=fee, currency=currency,
                 at=now - timedelta(days=merchant.settlement_delay_days + 1))
    settlement_run(merchant_id=merchant.id, now=now)
    outcome = payout_create(merchant_id=merchant.id, currency=currency, now=now)
    return Payout.objects.get(pk=outcome.payout_id)


def assert_payout_ended_during_next_create_goes_with_the_payout_after_it(monkeypatch, merchant, first, now, end):
    """`end()` (fail or return `first`) runs while the next payout is being created, paused right after
    its read of the available balance (real threads on PostgreSQL; nothing else stubbed). The new
    payout lists only what it paid (the day-2 capture), and the payout after it takes `first`'s money
    and lists its transactions. `first` is in transit or paid at `now`; its statement is read here."""
    import threading
    import time

    from django.db import connection

    from ledger.verify import ledger_verify
    from reconciliation.models import Payout
    from reconciliation.selectors import payout_statement
    from reconciliation.services import payout_create, settlement_run
    from reconciliation.services import payouts as payouts_module

    first_refs = [line.reference for line in payout_statement(payout=first).lines]
    day2 = now + timedelta(days=1)
    second_capture = post_capture(merchant.id, gross=2_000, fee=60, at=now + timedelta(hours=1))  # 1,940
    settlement_run(merchant_id=merchant.id, now=day2)

    read, go = threading.Event(), threading.Event()
    real_available = payouts_module._available

    def paused_available(merchant_id: str, currency: str) -> int:
        amount = real_available(merchant_id, currency)
        read.set()
        assert go.wait(30)
        return amount

    monkeypatch.setattr(payouts_module, "_available", paused_available)
    errors: list[BaseException] = []
    created: dict[str, str] = {}

    def in_thread(fn):
        def body() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 (surfaced to the test)
                errors.append(exc)
            finally:
                connection.close()

        return threading.Thread(target=body)

    creator = in_thread(
        lambda: created.update(id=payout_create(merchant_id=merchant.id, currency="EUR", now=day2).payout_id)
    )
    ender = in_thread(lambda: end(day2))
    creator.start()
    assert read.wait(30)
    ender.start()
    time.sleep(0.5)  # the failure or return commits now, or waits for the payout being created
    go.set()
    creator.join(60)
    ender.join(60)
    assert errors == []
    monkeypatch.setattr(payouts_module, "_available", real_available)

    second = Payout.objects.get(pk=created["id"])
    s2 = payout_statement(payout=second)
    # the second payout lists what it paid: the day-2 capture, and not the ended payout's transactions
    assert [line.reference for line in s2.lines] == [second_capture.reference]
    assert s2.carried_in >= 0 and s2.ties_out

    # the money of the ended payout goes with the next payout, which lists its transactions
    third = Payout.objects.get(
        pk=payout_create(merchant_id=merchant.id, currency="EUR", now=day2 + timedelta(days=1)).payout_id
    )
    s3 = payout_statement(payout=third)
    assert third.amount == first.amount
    assert [line.reference for line in s3.lines] == first_refs
    assert s3.carried_in == 0 and s3.ties_out
    assert ledger_verify().ok
