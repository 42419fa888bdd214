"""A paid payout the bank sends back days later (closed account, wrong IBAN): paid -> failed.

What was wrong (session 16, w16c): a payout could only fail while pending or in transit. Once the
bank had confirmed it (`paid`, in transit cleared against bank cash), nothing could record that the
bank returned it: the money stayed "paid" in the books while it was back in our bank account, the
merchant's available balance never got it back and no event told the merchant. Now
`payout_mark_returned` (admin "Mark returned by the bank", `payout_mark --returned`) fails the paid
payout, posts bank cash -> available once (`payout_returned:<id>`), records `payout.failed` and
releases its settlement runs to the next payout, under the merchant's payout lock (the order of
`payout_create`). Every test here fails on main (no such service, action or option).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from ledger import selectors as ledger_selectors
from ledger.types import Accounts
from ledger.verify import ledger_verify
from payera.backoffice.models import StaffAction
from payera.events.models import Event
from payments.selectors import balance_transaction_public_text
from reconciliation.errors import PayoutStateError
from reconciliation.models import Payout, PayoutStatus
from reconciliation.selectors import payout_statement
from reconciliation.services import (
    payout_create,
    payout_mark_failed,
    payout_mark_in_transit,
    payout_mark_paid,
    payout_mark_returned,
)
from tests.backoffice.staff import make_staff, otp_force_login
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import (
    assert_payout_ended_during_next_create_goes_with_the_payout_after_it,
    asset,
    available,
    make_payout,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=3)


def _paid(merchant, now=NOW) -> Payout:
    payout = make_payout(merchant, gross=10_000, fee=300, now=now)  # 9,700
    payout_mark_in_transit(payout_id=payout.id, now=now)
    return payout_mark_paid(payout_id=payout.id, now=now)


def _journals(reference: str) -> int:
    from ledger.models import Journal

    return Journal.objects.filter(reference=reference).count()


@pytest.mark.django_db
def test_a_paid_payout_returned_by_the_bank_gives_the_money_back_to_available_once():
    merchant = MerchantFactory(settlement_delay_days=0)
    payout = _paid(merchant)
    cash_paid = asset(Accounts.bank_cash("EUR"))
    runs = list(payout_statement(payout=payout).lines)
    assert available(merchant.id) == 0 and runs

    returned = payout_mark_returned(payout_id=payout.id, reason="AC04 account closed", now=LATER)
    again = payout_mark_returned(payout_id=payout.id, reason="again", now=LATER + timedelta(hours=1))

    assert (returned.status, returned.failure_reason) == (PayoutStatus.FAILED, "AC04 account closed")
    assert returned.paid_at is not None and returned.failed_at == LATER
    assert (again.status, again.failure_reason, again.failed_at) == (PayoutStatus.FAILED, "AC04 account closed", LATER)
    assert available(merchant.id) == payout.amount  # back to the merchant, once
    assert asset(Accounts.bank_cash("EUR")) - cash_paid == payout.amount  # the cash is ours again
    assert _journals(f"payout_returned:{payout.id}") == 1
    events = list(Event.objects.filter(merchant_id=merchant.id, type="payout.failed"))
    assert len(events) == 1 and events[0].data["object"]["status"] == "failed"
    assert events[0].data["object"]["paid_at"] is not None and events[0].data["object"]["failed_at"] is not None
    assert ledger_verify().ok
    # the merchant's balance transactions (API, statements) show the return as it is, not as an opaque adjustment
    ref = f"payout_returned:{payout.id}"
    assert balance_transaction_public_text(journal_id=1, reference=ref, memo="m") == (ref, "m")

    # the next payout pays the money again and its statement lists the returned payout's transactions
    nxt = Payout.objects.get(
        pk=payout_create(merchant_id=merchant.id, currency="EUR", now=LATER + timedelta(days=1)).payout_id
    )
    statement = payout_statement(payout=nxt)
    assert nxt.amount == payout.amount
    assert [line.reference for line in statement.lines] == [line.reference for line in runs]
    assert statement.carried_in == 0 and statement.ties_out


@pytest.mark.django_db
def test_only_a_paid_payout_can_be_returned_and_a_paid_one_can_not_simply_fail():
    merchant = MerchantFactory(settlement_delay_days=0)
    pending = make_payout(merchant, now=NOW)
    with pytest.raises(PayoutStateError):
        payout_mark_returned(payout_id=pending.id, now=NOW)
    payout_mark_failed(payout_id=pending.id, now=NOW)  # failed before it was ever paid
    with pytest.raises(PayoutStateError):
        payout_mark_returned(payout_id=pending.id, now=NOW)
    paid = _paid(MerchantFactory(settlement_delay_days=0))
    with pytest.raises(PayoutStateError):  # failing is for a payout the bank never paid
        payout_mark_failed(payout_id=paid.id, now=NOW)


@pytest.mark.django_db
def test_payout_mark_returned_command():
    merchant = MerchantFactory(settlement_delay_days=0)
    payout = _paid(merchant)
    out = StringIO()
    call_command("payout_mark", payout.id, "--returned", "--reason", "AC01", "--json", stdout=out)
    body = json.loads(out.getvalue())
    assert (body["status"], body["failure_reason"]) == ("failed", "AC01")
    assert available(merchant.id) == payout.amount


@pytest.mark.django_db
def test_finance_marks_a_paid_payout_returned_from_the_admin_with_a_reason(client):
    from payera.staff.access import staff_grant_merchant

    a, b = MerchantFactory(settlement_delay_days=0), MerchantFactory(settlement_delay_days=0)
    pa, pb = _paid(a), _paid(b)
    support = make_staff("sup", role="support")
    staff_grant_merchant(user=support, merchant_id=a.id)
    otp_force_login(client, support)
    assert b"mark_returned" not in client.get("/admin/reconciliation/payout/").content  # not support's

    user = make_staff("fin", role="finance")
    staff_grant_merchant(user=user, merchant_id=a.id)
    otp_force_login(client, user)
    url = "/admin/reconciliation/payout/"
    assert b"mark_returned" in client.get(url).content
    asked = client.post(url, {"action": "mark_returned", "_selected_action": [pa.id]})
    assert asked.status_code == 200 and Payout.objects.get(pk=pa.id).status == PayoutStatus.PAID  # asks why first
    client.post(
        url,
        {
            "action": "mark_returned",
            "_selected_action": [pa.id, pb.id],
            "confirm": "1",
            "reason": "bank statement: AC04",
        },
    )
    assert Payout.objects.get(pk=pa.id).status == PayoutStatus.FAILED
    assert Payout.objects.get(pk=pb.id).status == PayoutStatus.PAID  # another merchant's: untouched
    assert Payout.objects.get(pk=pa.id).failure_reason == "returned"  # never the staff's words
    assert available(a.id) == pa.amount and available(b.id) == 0
    action = StaffAction.objects.get(action="reconciliation.payout_mark_returned")
    assert (action.object_id, action.reason, action.user_id) == (pa.id, "bank statement: AC04", user.id)


def _thread(fn, errors):
    def body() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 (surfaced to the test)
            errors.append(exc)
        finally:
            connection.close()

    return threading.Thread(target=body)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions: PostgreSQL")
def test_two_concurrent_returns_post_once():
    merchant = MerchantFactory(settlement_delay_days=0)
    payout = _paid(merchant)
    start, errors = threading.Barrier(4), []
    threads = [
        _thread(lambda: (start.wait(10), payout_mark_returned(payout_id=payout.id, now=LATER)), errors)
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert _journals(f"payout_returned:{payout.id}") == 1
    assert Event.objects.filter(merchant_id=merchant.id, type="payout.failed").count() == 1
    assert available(merchant.id) == payout.amount
    balance = ledger_selectors.account_balance(key=Accounts.merchant_available(merchant.id, "EUR"))
    assert -balance.posted == payout.amount
    assert ledger_verify().ok


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions: PostgreSQL")
def test_a_return_during_the_next_payouts_creation_goes_with_the_payout_after_it(monkeypatch):
    """The return waits for the merchant's payout lock: a payout being created (its available read
    without the returned money) does not claim the returned payout's settlement runs."""
    merchant = MerchantFactory(settlement_delay_days=0)
    first = _paid(merchant)
    assert_payout_ended_during_next_create_goes_with_the_payout_after_it(
        monkeypatch, merchant, first, NOW,
        lambda at: payout_mark_returned(payout_id=first.id, reason="AC04", now=at),
    )
