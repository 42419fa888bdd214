"""The payout bank file: clear account and holder name for the bank, finance only (a permission of
its own), limited to the user's merchants, audited per payout, never logged."""

from __future__ import annotations

import csv
import io
import logging

import pytest

from payera.backoffice.models import StaffAction
from payera.staff.access import staff_grant_merchant
from reconciliation.errors import BankAccountInvalidError, PayoutBankFilePermissionError, PayoutStateError
from reconciliation.services import (
    payout_bank_file_export,
    payout_mark_failed,
    payout_settings_update,
)
from tests.backoffice.staff import make_staff, otp_force_login
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import BANK_ACCOUNT, make_payout

pytestmark = pytest.mark.django_db

URL = "/admin/reconciliation/payout/"
REASON = "daily payout batch, ticket FIN-42"


@pytest.fixture
def world():
    a, b = MerchantFactory(name="A"), MerchantFactory(name="B")
    return a, b, make_payout(a, gross=10_000, fee=300), make_payout(b, gross=5_000, fee=100)


def _staff(client, role, *merchants, name="u"):
    user = make_staff(name, role=role)
    for m in merchants:
        staff_grant_merchant(user=user, merchant_id=m.id)
    otp_force_login(client, user)
    return user


def _export(client, ids):
    return client.post(URL, {"action": "export_bank_file", "_selected_action": ids, "confirm": "yes", "reason": REASON})


def test_finance_exports_a_bank_file_the_bank_can_execute_and_each_payout_is_audited(client, world, caplog):
    a, b, pa, pb = world
    user = _staff(client, "finance", a, b)
    caplog.set_level(logging.DEBUG)
    page = client.post(URL, {"action": "export_bank_file", "_selected_action": [pa.id, pb.id]})
    assert page.status_code == 200 and b"reason" in page.content  # asks why first
    assert not StaffAction.objects.exists()
    response = _export(client, [pa.id, pb.id])
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "no-store" in response["Cache-Control"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["reference"] for r in rows] == [pa.id, pb.id]
    assert rows[0] == {
        "reference": pa.id,
        "beneficiary_name": "Shop GmbH",
        "beneficiary_account": BANK_ACCOUNT,
        "currency": "EUR",
        "amount": "97.00",
        "amount_minor": "9700",
        "execution_date": pa.payout_date.isoformat(),
        "remittance_information": f"Payera payout {pa.id}",
        "merchant_id": a.id,
    }
    audit = list(
        StaffAction.objects.order_by("object_id").values(
            "user_id", "action", "object_id", "merchant_id", "reason", "outcome"
        )
    )
    assert audit == sorted(
        [
            {
                "user_id": user.id,
                "action": "reconciliation.export_bank_file",
                "object_id": p.id,
                "merchant_id": p.merchant_id,
                "reason": REASON,
                "outcome": "done",
            }
            for p in (pa, pb)
        ],
        key=lambda r: r["object_id"],
    )
    assert BANK_ACCOUNT not in caplog.text and "Shop GmbH" not in caplog.text
    assert not StaffAction.objects.filter(detail__contains=BANK_ACCOUNT).exists()


def test_other_roles_have_no_bank_file_action_and_get_no_clear_account(client, world):
    a, _, pa, _ = world
    for role in ("support", "operations"):
        _staff(client, role, a, name=role)
        assert b"export_bank_file" not in client.get(URL).content
        response = _export(client, [pa.id])
        assert BANK_ACCOUNT.encode() not in response.content
    ops = make_staff("ops", role="operations")
    staff_grant_merchant(user=ops, merchant_id=a.id)
    with pytest.raises(PayoutBankFilePermissionError):  # the service checks again, merchant granted or not
        payout_bank_file_export(user=ops, payout_ids=[pa.id], reason=REASON)
    assert not StaffAction.objects.exists()


def test_finance_limited_to_a_never_exports_bs_payouts(client, world):
    a, b, pa, pb = world
    user = _staff(client, "finance", a)
    response = _export(client, [pa.id, pb.id])  # B's id posted by hand: dropped by the scoped queryset
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["reference"] for r in rows] == [pa.id]
    only_b = _export(client, [pb.id])
    assert BANK_ACCOUNT.encode() not in only_b.content
    with pytest.raises(PayoutBankFilePermissionError):  # the service itself: the whole file is refused
        payout_bank_file_export(user=user, payout_ids=[pa.id, pb.id], reason=REASON)
    assert list(StaffAction.objects.values_list("object_id", flat=True)) == [pa.id]


def test_a_file_the_bank_could_not_execute_is_refused_whole(client, world):
    a, b, pa, pb = world
    user = make_staff("fin", role="finance")
    staff_grant_merchant(user=user, merchant_id=a.id)
    staff_grant_merchant(user=user, merchant_id=b.id)
    payout_settings_update(merchant_id=b.id, bank_account=BANK_ACCOUNT, bank_account_holder="")
    with pytest.raises(BankAccountInvalidError, match="holder"):
        payout_bank_file_export(user=user, payout_ids=[pa.id, pb.id], reason=REASON)
    payout_settings_update(merchant_id=b.id, bank_account="FR7630006000011234567890189", bank_account_holder="B SA")
    with pytest.raises(BankAccountInvalidError, match="changed"):
        payout_bank_file_export(user=user, payout_ids=[pb.id], reason=REASON)
    payout_mark_failed(payout_id=pa.id, reason="returned")
    with pytest.raises(PayoutStateError):
        payout_bank_file_export(user=user, payout_ids=[pa.id], reason=REASON)
    assert not StaffAction.objects.exists()


def test_the_holder_name_can_not_inject_a_spreadsheet_formula(world):
    a, _, pa, _ = world
    payout_settings_update(
        merchant_id=a.id, bank_account=BANK_ACCOUNT, bank_account_holder='=HYPERLINK("http://evil.example","x")'
    )
    user = make_staff("fin", role="finance")
    staff_grant_merchant(user=user, merchant_id=a.id)
    [row] = csv.DictReader(io.StringIO(payout_bank_file_export(user=user, payout_ids=[pa.id], reason=REASON).content))
    assert row["beneficiary_name"] == '\'=HYPERLINK("http://evil.example","x")'


def test_a_payout_in_a_bank_file_is_in_transit_and_can_be_exported_again(client, world):
    """Session 13's review: exporting left the payouts `pending`, and a pending payout may be failed
    back to available; had the bank executed the file, the money would then have been paid twice.
    A payout in a file the bank may execute is in transit: only the bank's refusal or return fails it."""
    a, _, pa, _ = world
    _staff(client, "finance", a)
    assert _export(client, [pa.id]).status_code == 200
    pa.refresh_from_db()
    assert pa.status == "in_transit" and pa.in_transit_at is not None
    again = _export(client, [pa.id])  # a lost download: the same file again, still in transit
    assert again.status_code == 200 and pa.id in again.content.decode()
    pa.refresh_from_db()
    assert pa.status == "in_transit"
