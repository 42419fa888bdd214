"""`run_payouts --send` and marking a payout in transit by hand hold a suspended merchant's payouts,
whenever the suspension commits (found by session 14's review, 14d).

`payouts_send` chose the pending payouts of merchants that were not suspended in ONE query, then put
them in transit one by one with no lock on the merchant and no second look at its status: a
suspension committed during a long run (a fraud alert during the nightly send) did not hold the
merchant's payouts; they went in transit and into the file written for the bank (`--file`). Marking
a payout in transit by hand (admin action, `payout_mark`) did not look at the merchant at all.

Now `payout_mark_in_transit` locks the merchant first, as `merchant_suspend` and the bank file do, and
refuses a suspended merchant's pending payout (`PayoutHeldError`, 409 `payout_held`); the send keeps
such a payout `pending` and lists it in `held`. Staged on PostgreSQL with a real second connection:
the real `merchant_suspend` commits right before the send puts its first payout in transit."""
from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from payera.merchants.services import merchant_suspend
from reconciliation.models import Payout, PayoutStatus
from tests.helpers import race
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import make_payout

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_merchant_suspended_during_run_payouts_send_is_not_paid(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("a second connection committing in between: PostgreSQL")
    from reconciliation.services import payouts as service

    now = timezone.now()
    b = MerchantFactory(name="B (stays active)")
    a = MerchantFactory(name="A (suspended during the send)")
    pb = make_payout(b, gross=5_000, fee=100, now=now - timedelta(minutes=1))  # first in the send's order
    pa = make_payout(a, gross=10_000, fee=300, now=now)

    real = service.payout_mark_in_transit
    suspended: list[str] = []

    def mark_in_transit(**kwargs):
        if not suspended:  # the run is under way: operations suspend A (fraud alert), committed now
            race(1, lambda: merchant_suspend(merchant_id=a.id))  # committed by another connection
            suspended.append(a.id)
        return real(**kwargs)

    monkeypatch.setattr(service, "payout_mark_in_transit", mark_in_transit)
    out = StringIO()
    call_command("run_payouts", "--send", "--json", stdout=out)
    body = json.loads(out.getvalue())

    assert suspended == [a.id]
    assert Payout.objects.get(pk=pb.id).status == PayoutStatus.IN_TRANSIT
    status = Payout.objects.get(pk=pa.id).status
    assert pa.id not in body["sent"] and status == PayoutStatus.PENDING, (
        f"merchant {a.id} was suspended before its payout {pa.id} was put in transit, yet the payout went "
        f"in transit ({status}) and into the bank file: sent={body['sent']} held={body['held']}"
    )


def test_a_suspended_merchants_payout_is_not_put_in_transit_by_hand():
    from payera.merchants.services import merchant_reactivate
    from reconciliation.errors import PayoutHeldError
    from reconciliation.services import payout_mark_in_transit

    now = timezone.now()
    merchant = MerchantFactory(name="suspended after its payout was created")
    payout = make_payout(merchant, gross=10_000, fee=300, now=now)
    merchant_suspend(merchant_id=merchant.id)
    with pytest.raises(PayoutHeldError):
        payout_mark_in_transit(payout_id=payout.id)
    assert Payout.objects.get(pk=payout.id).status == PayoutStatus.PENDING
    merchant_reactivate(merchant_id=merchant.id)  # reinstated: it goes out as any other
    assert payout_mark_in_transit(payout_id=payout.id).status == PayoutStatus.IN_TRANSIT
