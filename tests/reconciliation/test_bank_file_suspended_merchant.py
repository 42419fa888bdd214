"""A suspended merchant's payouts stay out of the bank file and out of `run_payouts --send`, are
reported to the operator, and go out once the merchant is reinstated.

What was wrong (fix 14a): `payout_create` held new payouts of a suspended merchant
(`merchant_suspended`), but payouts created before the suspension were still exported in the bank
file (reconciliation/services/bank_file.py) and sent by `run_payouts --send`: the bank paid a
suspended merchant."""

from __future__ import annotations

import csv
import io
import json
from io import StringIO

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command

from payera.backoffice.models import StaffAction
from payera.merchants.services import merchant_reactivate, merchant_suspend
from payera.staff.access import staff_grant_merchant
from reconciliation.errors import PayoutHeldError
from reconciliation.models import PayoutStatus
from reconciliation.services import payout_bank_file_export, payouts_held
from tests.backoffice.staff import make_staff, otp_force_login
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import make_payout

pytestmark = pytest.mark.django_db

URL = "/admin/reconciliation/payout/"
REASON = "daily payout batch, ticket FIN-43"


@pytest.fixture
def world():
    """Two merchants with a pending payout each; then A is suspended."""
    a, b = MerchantFactory(name="A"), MerchantFactory(name="B")
    pa, pb = make_payout(a, gross=10_000, fee=300), make_payout(b, gross=5_000, fee=100)
    merchant_suspend(merchant_id=a.id)
    return a, b, pa, pb


def _finance(*merchants):
    user = make_staff("fin", role="finance")
    for m in merchants:
        staff_grant_merchant(user=user, merchant_id=m.id)
    return user


def _references(content: str) -> list[str]:
    return [r["reference"] for r in csv.DictReader(io.StringIO(content))]


def test_a_suspended_merchants_payout_is_held_out_of_the_bank_file_until_reinstated(world):
    a, b, pa, pb = world
    user = _finance(a, b)
    bank_file = payout_bank_file_export(user=user, payout_ids=[pa.id, pb.id], reason=REASON)
    assert _references(bank_file.content) == [pb.id]
    assert pa.id not in bank_file.content and bank_file.payout_ids == (pb.id,)
    assert [(h.payout_id, h.merchant_id, h.reason) for h in bank_file.held] == [(pa.id, a.id, "merchant_suspended")]
    pa.refresh_from_db()
    pb.refresh_from_db()
    assert (pa.status, pb.status) == (PayoutStatus.PENDING, PayoutStatus.IN_TRANSIT)  # held, not sent
    audit = dict(StaffAction.objects.values_list("object_id", "outcome"))
    assert audit == {pb.id: "done", pa.id: "refused"}
    assert "merchant suspended" in StaffAction.objects.get(object_id=pa.id).detail

    with pytest.raises(PayoutHeldError, match=f"{pa.id} \\(merchant {a.id} suspended\\)"):
        payout_bank_file_export(user=user, payout_ids=[pa.id], reason=REASON)  # nothing else: no file

    merchant_reactivate(merchant_id=a.id)
    again = payout_bank_file_export(user=user, payout_ids=[pa.id], reason=REASON)
    assert _references(again.content) == [pa.id] and again.held == ()
    pa.refresh_from_db()
    assert pa.status == PayoutStatus.IN_TRANSIT


def test_the_admin_tells_the_operator_which_payouts_were_held(client, world):
    a, b, pa, pb = world
    otp_force_login(client, _finance(a, b))
    response = client.post(URL, {"action": "export_bank_file", "_selected_action": [pa.id, pb.id],
                                 "confirm": "yes", "reason": REASON})
    assert response.status_code == 200 and _references(response.content.decode()) == [pb.id]
    assert response["Payera-Held-Payouts"] == pa.id
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any(pa.id in m and "suspended" in m and "reinstated" in m for m in shown), shown
    only_held = client.post(URL, {"action": "export_bank_file", "_selected_action": [pa.id], "confirm": "yes",
                                  "reason": REASON}, follow=True)
    assert not only_held["Content-Type"].startswith("text/csv")
    assert f"{pa.id} (merchant {a.id} suspended)" in only_held.content.decode()


def test_run_payouts_send_holds_a_suspended_merchants_payouts_and_reports_them(world):
    a, b, pa, pb = world
    out = StringIO()
    call_command("run_payouts", "--send", "--json", stdout=out)
    body = json.loads(out.getvalue())
    assert pb.id in body["sent"] and pa.id not in body["sent"]
    assert {"payout": pa.id, "merchant": a.id, "amount": pa.amount, "currency": "EUR",
            "reason": "merchant_suspended"} in body["held"]
    pa.refresh_from_db()
    assert pa.status == PayoutStatus.PENDING
    text = StringIO()
    call_command("run_payouts", "--send", "--merchant", a.id, stdout=text)
    assert f"held: {pa.id}" in text.getvalue() and "1 held" in text.getvalue()

    merchant_reactivate(merchant_id=a.id)
    assert payouts_held(merchant_id=a.id) == []
    out = StringIO()
    call_command("run_payouts", "--send", "--merchant", a.id, "--json", stdout=out)
    assert json.loads(out.getvalue())["sent"] == [pa.id]
    pa.refresh_from_db()
    assert pa.status == PayoutStatus.IN_TRANSIT
