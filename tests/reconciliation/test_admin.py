"""Back office: payouts and settlement runs are read only, actions need finance permissions and
stay within the staff member's merchants; CSV exports of the payout file and statements."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.admin.utils import quote

from reconciliation.models import Payout, PayoutStatus
from reconciliation.services import payout_mark_in_transit
from tests.backoffice.staff import make_staff, otp_force_login
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import BANK_ACCOUNT, available, make_payout

pytestmark = pytest.mark.django_db

URL = "/admin/reconciliation/payout/"
WHY = {"confirm": "1", "reason": "bank statement of the day"}  # the action page's reason


@pytest.fixture
def world():
    a, b = MerchantFactory(name="A"), MerchantFactory(name="B")
    pa, pb = make_payout(a), make_payout(b)
    payout_mark_in_transit(payout_id=pa.id)
    payout_mark_in_transit(payout_id=pb.id)
    return a, b, pa, pb


def _finance_of(client, merchant):
    from payera.staff.access import staff_grant_merchant

    user = make_staff("fin", role="finance")
    staff_grant_merchant(user=user, merchant_id=merchant.id)
    otp_force_login(client, user)
    return user


def test_finance_marks_its_merchants_payout_paid_but_never_another_merchants(client, world):
    a, b, pa, pb = world
    _finance_of(client, a)
    page = client.get(URL)
    assert page.status_code == 200 and pa.id.encode() in page.content and pb.id.encode() not in page.content
    assert client.get(f"{URL}{quote(pb.id)}/change/").status_code == 302  # "does not exist" -> admin index
    client.post(URL, {"action": "mark_paid", "_selected_action": [pa.id, pb.id], **WHY})
    assert Payout.objects.get(pk=pa.id).status == PayoutStatus.PAID
    assert Payout.objects.get(pk=pb.id).status == PayoutStatus.IN_TRANSIT
    assert client.get(f"{URL}{quote(pa.id)}/change/").status_code == 200


def test_finance_marks_failed_and_the_money_returns_to_available(client, world):
    a, _, pa, _ = world
    _finance_of(client, a)
    client.post(URL, {"action": "mark_failed", "_selected_action": [pa.id], **WHY})
    assert Payout.objects.get(pk=pa.id).status == PayoutStatus.FAILED
    assert available(a.id) == pa.amount


def test_a_payout_failed_from_the_admin_does_not_show_the_staff_member_to_the_merchant(client, world):
    """The admin's "mark failed" wrote `marked failed by <username>` into `failure_reason`, which is
    the merchant's: `GET /v1/payouts/{id}` and the `payout.failed` webhook named the back-office
    user. Who did it belongs in the audit trail (Payout is audited with the staff actor), not in
    the merchant's object."""
    from django.contrib.contenttypes.models import ContentType

    from payera.audit.models import AuditLogEntry
    from payera.events.models import Event
    from tests.conftest import client_for
    from tests.merchants.factories import make_api_key

    a, _, pa, _ = world
    user = _finance_of(client, a)
    client.post(URL, {"action": "mark_failed", "_selected_action": [pa.id], **WHY})
    assert Payout.objects.get(pk=pa.id).status == PayoutStatus.FAILED
    merchant_api = client_for(make_api_key(a).secret)
    answer = merchant_api.get(f"/v1/payouts/{pa.id}")
    assert answer.status_code == 200 and answer.json()["status"] == "failed"
    [event] = Event.objects.filter(merchant_id=a.id, type="payout.failed")
    for shown in (answer.json(), event.data["object"]):
        assert shown["failure_reason"] and user.get_username() not in shown["failure_reason"], shown
    audited = AuditLogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Payout), object_pk=pa.id,
                                           actor=user)
    assert audited.exists()  # who marked it failed


def test_support_sees_no_payout_actions(client, world):
    a, _, pa, _ = world
    from payera.staff.access import staff_grant_merchant

    user = make_staff("sup", role="support")
    staff_grant_merchant(user=user, merchant_id=a.id)
    otp_force_login(client, user)
    client.post(URL, {"action": "mark_paid", "_selected_action": [pa.id], **WHY})
    assert Payout.objects.get(pk=pa.id).status == PayoutStatus.IN_TRANSIT


def test_csv_exports_of_the_payout_file_and_statement(client, world):
    a, _, pa, pb = world
    _finance_of(client, a)
    response = client.post(URL, {"action": "export_csv", "_selected_action": [pa.id, pb.id]})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["id"] for r in rows] == [pa.id]  # B's payout is not this user's
    assert rows[0]["bank_account_masked"] == "DE89…3000" and BANK_ACCOUNT not in response.content.decode()
    response = client.post(URL, {"action": "export_statement", "_selected_action": [pa.id]})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["line"] for r in rows] == ["carried_in", "transaction", "reserve_kept", "payout"]
    assert rows[1]["kind"] == "capture" and rows[1]["reference"].startswith("capture:")


def test_money_fields_are_read_only_and_nothing_can_be_added(client, world):
    _, _, pa, _ = world
    otp_force_login(client, make_staff("root", superuser=True))
    assert client.get(f"{URL}add/").status_code == 403
    page = client.get(f"{URL}{quote(pa.id)}/change/")
    assert page.status_code == 200 and b'name="amount"' not in page.content
    assert client.get("/admin/reconciliation/settlementrun/").status_code == 200
    assert client.get("/admin/").status_code == 200
