"""Payouts: minimum, reserve, state machine postings, events, statements, balances tie out."""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from ledger import selectors as ledger_selectors
from ledger.types import Accounts
from ledger.verify import ledger_verify
from payera.events.models import Event
from reconciliation.errors import PayoutStateError
from reconciliation.exports import payout_file_csv, payout_statement_csv
from reconciliation.models import MerchantPayoutSettings, Payout, PayoutStatus
from reconciliation.selectors import payout_statement
from reconciliation.services import (
    payout_bank_account_reveal,
    payout_create,
    payout_mark_failed,
    payout_mark_in_transit,
    payout_mark_paid,
    payout_run,
    payout_settings_update,
    settlement_run,
)
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import (
    BANK_ACCOUNT,
    asset,
    available,
    make_payout,
    pending,
    post_capture,
    post_refund,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def setup_merchant(*, reserve_bps=0, minimum=100, delay=1):
    merchant = MerchantFactory(settlement_delay_days=delay)
    payout_settings_update(merchant_id=merchant.id, bank_account=BANK_ACCOUNT, bank_account_holder="Shop GmbH",
                           reserve_bps=reserve_bps, minimum_payout_amounts={"EUR": minimum})
    return merchant


def test_defaults_and_the_bank_account_is_stored_encrypted_only():
    merchant = MerchantFactory()
    row = payout_settings_update(merchant_id=merchant.id, bank_account="de89 3704 0044 0532 0130 00")
    # no own minimum: each currency's default (RECONCILIATION_PAYOUT_MINIMUM; tests/reconciliation/
    # test_payout_minimum_per_currency.py)
    assert row.minimum_payout_amounts == {} and row.reserve_bps == 0 and row.payouts_enabled
    stored = MerchantPayoutSettings.objects.filter(pk=merchant.id).values()[0]
    assert BANK_ACCOUNT not in json.dumps(stored, default=str)
    assert row.bank_account_masked == "DE89…3000"
    assert payout_bank_account_reveal(merchant_id=merchant.id)["account"] == BANK_ACCOUNT


def test_payout_keeps_the_reserve_back_and_respects_the_minimum():
    merchant = setup_merchant(reserve_bps=1000, minimum=100)
    cap = post_capture(merchant.id, gross=10_000, fee=300, at=NOW - timedelta(days=3))
    settlement_run(merchant_id=merchant.id, now=NOW)
    outcome = payout_create(merchant_id=merchant.id, currency="EUR", now=NOW)
    assert outcome.created and outcome.amount == cap.net - 970  # 10 % of 9,700 kept back
    assert available(merchant.id) == 970
    payout = Payout.objects.get(pk=outcome.payout_id)
    assert (payout.available_before, payout.reserve_kept, payout.status) == (9_700, 970, PayoutStatus.PENDING)

    small = setup_merchant(minimum=5_000)
    post_capture(small.id, gross=4_000, fee=120, at=NOW - timedelta(days=3))
    settlement_run(merchant_id=small.id, now=NOW)
    refused = payout_create(merchant_id=small.id, currency="EUR", now=NOW)
    assert (refused.created, refused.reason, refused.payout_id) == (False, "below_minimum", None)
    assert available(small.id) == 3_880

    no_bank = MerchantFactory(settlement_delay_days=0)
    post_capture(no_bank.id, gross=4_000, fee=120, at=NOW - timedelta(days=3))
    settlement_run(merchant_id=no_bank.id, now=NOW)
    assert payout_create(merchant_id=no_bank.id, currency="EUR", now=NOW).reason == "no_bank_account"


def test_payout_run_twice_pays_once():
    merchant = setup_merchant(reserve_bps=1000)
    post_capture(merchant.id, gross=10_000, fee=300, at=NOW - timedelta(days=3))
    settlement_run(merchant_id=merchant.id, now=NOW)
    first = [o for o in payout_run(now=NOW) if o.merchant_id == merchant.id]
    second = [o for o in payout_run(now=NOW + timedelta(hours=2)) if o.merchant_id == merchant.id]
    assert [o.reason for o in first] == ["created"] and [o.reason for o in second] == ["exists"]
    assert second[0].payout_id == first[0].payout_id
    assert Payout.objects.filter(merchant=merchant).count() == 1
    assert available(merchant.id) == 970


def test_paid_posts_in_transit_to_bank_cash_and_records_events():
    merchant = setup_merchant()
    bank_before, transit_before = asset(Accounts.bank_cash("EUR")), asset(Accounts.payouts_in_transit("EUR"))
    payout = make_payout(merchant, now=NOW)
    assert asset(Accounts.payouts_in_transit("EUR")) - transit_before == -payout.amount
    with pytest.raises(PayoutStateError):
        payout_mark_paid(payout_id=payout.id, now=NOW)  # not sent yet
    payout_mark_in_transit(payout_id=payout.id, now=NOW)
    paid = payout_mark_paid(payout_id=payout.id, now=NOW + timedelta(days=1))
    assert paid.status == PayoutStatus.PAID
    assert payout_mark_paid(payout_id=payout.id).status == PayoutStatus.PAID  # a repeat is a no-op
    assert asset(Accounts.payouts_in_transit("EUR")) == transit_before
    assert asset(Accounts.bank_cash("EUR")) - bank_before == -payout.amount
    journal = ledger_selectors.journal_get(reference=f"payout_paid:{payout.id}")
    assert journal.kind == "payout"
    types = list(Event.objects.filter(merchant_id=merchant.id).order_by("created_at").values_list("type", flat=True))
    assert types == ["payout.created", "payout.paid"]
    event = Event.objects.get(merchant_id=merchant.id, type="payout.paid")
    assert event.data["object"]["id"] == payout.id and event.data["object"]["status"] == "paid"
    with pytest.raises(PayoutStateError):
        payout_mark_failed(payout_id=payout.id)
    assert ledger_verify().ok


def test_failed_returns_the_money_to_available_and_the_next_payout_carries_it():
    merchant = setup_merchant()
    payout = make_payout(merchant, now=NOW)
    assert available(merchant.id) == 0
    payout_mark_in_transit(payout_id=payout.id, now=NOW)
    failed = payout_mark_failed(payout_id=payout.id, reason="account closed", now=NOW)
    assert failed.status == PayoutStatus.FAILED and failed.failure_reason == "account closed"
    assert available(merchant.id) == payout.amount
    assert Event.objects.filter(merchant_id=merchant.id, type="payout.failed").count() == 1
    payout_mark_failed(payout_id=payout.id)  # repeat: no second reversal
    assert available(merchant.id) == payout.amount

    nxt = payout_create(merchant_id=merchant.id, currency="EUR", now=NOW + timedelta(days=1))
    assert nxt.amount == payout.amount
    statement = payout_statement(payout=Payout.objects.get(pk=nxt.payout_id))
    assert statement.settled == payout.amount and statement.ties_out
    assert ledger_verify().ok


def test_statement_lists_exactly_the_payouts_transactions():
    merchant = setup_merchant(reserve_bps=500, delay=1)
    day1 = [post_capture(merchant.id, gross=10_000, fee=300, at=NOW - timedelta(days=5)),
            post_refund(merchant.id, amount=1_000, at=NOW - timedelta(days=4))]
    settlement_run(merchant_id=merchant.id, now=NOW - timedelta(days=2))
    first = Payout.objects.get(pk=payout_create(merchant_id=merchant.id, currency="EUR", now=NOW - timedelta(days=2))
                               .payout_id)
    day2 = [post_capture(merchant.id, gross=3_000, fee=90, at=NOW - timedelta(days=2)),
            post_capture(merchant.id, gross=2_000, fee=60, at=NOW - timedelta(days=1, hours=12))]
    young = post_capture(merchant.id, gross=777, fee=7, at=NOW)  # not settled yet: in no statement
    settlement_run(merchant_id=merchant.id, now=NOW)
    second = Payout.objects.get(pk=payout_create(merchant_id=merchant.id, currency="EUR", now=NOW).payout_id)

    s1, s2 = payout_statement(payout=first), payout_statement(payout=second)
    assert [line.reference for line in s1.lines] == [p.reference for p in day1]
    assert [line.reference for line in s2.lines] == [p.reference for p in day2]
    assert young.reference not in {line.reference for line in (*s1.lines, *s2.lines)}
    assert s1.carried_in == 0 and s2.carried_in == first.reserve_kept
    assert s1.ties_out and s2.ties_out

    rows = list(csv.DictReader(io.StringIO(payout_statement_csv(s2))))
    assert [r["line"] for r in rows] == ["carried_in", "transaction", "transaction", "reserve_kept", "payout"]
    assert [r["reference"] for r in rows if r["line"] == "transaction"] == [p.reference for p in day2]
    assert sum(int(r["amount_minor"]) for r in rows) == 0  # the statement adds up to the payout
    assert rows[-1]["reference"] == f"payout:{second.id}"


def test_the_statement_dates_the_payout_when_it_was_made_not_when_its_row_was_stamped():
    """`Payout.created_at` is the database's commit stamp of the row (payera.core.horizon), not the
    time the payout was made: a run at NOW (a catch-up, a test's clock, or one that crosses
    midnight) pays out on NOW's day and books its journal at NOW; the statement's payout line says
    so too, not the day its row happened to be inserted."""
    merchant = setup_merchant()
    post_capture(merchant.id, gross=10_000, fee=300, at=NOW - timedelta(days=3))
    settlement_run(merchant_id=merchant.id, now=NOW)
    payout = Payout.objects.get(pk=payout_create(merchant_id=merchant.id, currency="EUR", now=NOW).payout_id)
    assert payout.payout_date == NOW.date()
    assert ledger_selectors.journal_get(reference=payout.journal_reference).occurred_at == NOW
    statement = payout_statement(payout=payout)
    rows = list(csv.DictReader(io.StringIO(payout_statement_csv(statement))))
    assert rows[-1]["line"] == "payout" and rows[-1]["occurred_at"] == NOW.isoformat()


def test_balances_tie_out_after_settlement_payouts_paid_and_failed():
    merchant = setup_merchant(reserve_bps=1000)
    captured = refunds = fees = 0
    for day in range(10, 0, -1):
        at = NOW - timedelta(days=day)
        cap = post_capture(merchant.id, gross=5_000 + day, fee=150, at=at)
        captured, fees = captured + 5_000 + day, fees + 150
        if day % 3 == 0:
            refunds += 700
            post_refund(merchant.id, amount=700, at=at + timedelta(hours=1))
        settlement_run(merchant_id=merchant.id, now=at)
        outcome = payout_create(merchant_id=merchant.id, currency="EUR", now=at)
        if outcome.created:
            payout_mark_in_transit(payout_id=outcome.payout_id, now=at)
            if day % 4 == 0:
                payout_mark_failed(payout_id=outcome.payout_id, now=at)
            elif day % 2 == 0:
                payout_mark_paid(payout_id=outcome.payout_id, now=at)
        assert cap.reference
    payouts = Payout.objects.filter(merchant=merchant)
    in_transit = sum(p.amount for p in payouts if p.status in (PayoutStatus.PENDING, PayoutStatus.IN_TRANSIT))
    paid = sum(p.amount for p in payouts if p.status == PayoutStatus.PAID)
    assert paid and in_transit and payouts.filter(status=PayoutStatus.FAILED).exists()
    assert pending(merchant.id) + available(merchant.id) + in_transit + paid == captured - refunds - fees
    assert ledger_verify().ok


def test_commands_run_payouts_and_payout_mark(caplog):
    caplog.set_level(logging.DEBUG)
    merchant = setup_merchant()
    cap = post_capture(merchant.id, gross=10_000, fee=300, at=NOW - timedelta(days=30))
    call_command("run_settlement", "--merchant", merchant.id, "--json", stdout=StringIO())
    out = StringIO()
    call_command("run_payouts", "--merchant", merchant.id, "--send", "--file", "-", stdout=out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 1 and rows[0]["amount_minor"] == str(cap.net) and rows[0]["bank_account"] == "DE89…3000"
    assert rows[0]["amount"] == "97.00"
    payout_id = rows[0]["payout_id"]
    assert Payout.objects.get(pk=payout_id).status == PayoutStatus.IN_TRANSIT
    out = StringIO()
    call_command("payout_mark", payout_id, "--paid", "--json", stdout=out)
    assert json.loads(out.getvalue())["status"] == "paid"
    statement = StringIO()
    call_command("payout_statement", payout_id, stdout=statement)
    lines = list(csv.DictReader(io.StringIO(statement.getvalue())))
    assert [r["reference"] for r in lines if r["line"] == "transaction"] == [cap.reference]
    for text in (out.getvalue(), statement.getvalue(), caplog.text, payout_file_csv(Payout.objects.all())):
        assert BANK_ACCOUNT not in text and "0532013000" not in text


def test_a_suspended_merchant_is_settled_but_its_payouts_are_held():
    from payera.merchants.services import merchant_suspend

    merchant = setup_merchant()
    cap = post_capture(merchant.id, gross=10_000, fee=300, at=NOW - timedelta(days=3))
    merchant_suspend(merchant_id=merchant.id)
    settlement_run(merchant_id=merchant.id, now=NOW)
    assert available(merchant.id) == cap.net
    held = payout_create(merchant_id=merchant.id, currency="EUR", now=NOW)
    assert (held.created, held.reason) == (False, "merchant_suspended")
    assert available(merchant.id) == cap.net


def test_payout_settings_are_checked():
    from payera.core.errors import InvalidRequestError, NotFoundError

    merchant = MerchantFactory()
    with pytest.raises(NotFoundError):
        payout_settings_update(merchant_id="mer_nope", reserve_bps=10)
    with pytest.raises(InvalidRequestError):
        payout_settings_update(merchant_id=merchant.id, reserve_bps=10_001)
    with pytest.raises(InvalidRequestError):
        payout_settings_update(merchant_id=merchant.id, minimum_payout_amounts={"EUR": 0})
    with pytest.raises(InvalidRequestError):
        payout_settings_update(merchant_id=merchant.id, bank_account="12")
