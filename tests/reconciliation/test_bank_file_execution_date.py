"""The bank file never asks the bank to execute a transfer in the past (session 16, h16f).

What was wrong: each row's `execution_date` was the payout's creation date. A payout exported
later (a lost download exported again, a payout held while its merchant was suspended and sent
once reinstated, a weekend) asked the bank for an execution date already past, which banks refuse
(often the whole file: every payout in it late) or handle each their own way. Now it is the later
of the payout date and the day the file is made (UTC)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from payera.staff.access import staff_grant_merchant
from reconciliation.services import payout_bank_file_export
from tests.backoffice.staff import make_staff
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import make_payout

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_execution_date_is_never_before_the_day_the_file_is_made():
    merchant = MerchantFactory()
    old = make_payout(merchant, now=NOW - timedelta(days=3), currency="EUR")
    today = make_payout(merchant, now=NOW, currency="USD")
    user = make_staff("fin", role="finance")
    staff_grant_merchant(user=user, merchant_id=merchant.id)

    bank_file = payout_bank_file_export(user=user, payout_ids=[old.id, today.id], reason="batch", now=NOW)

    rows = {r["reference"]: r for r in csv.DictReader(io.StringIO(bank_file.content))}
    assert old.payout_date.isoformat() == "2026-11-20"
    assert rows[old.id]["execution_date"] == "2026-11-23"
    assert rows[today.id]["execution_date"] == "2026-11-23"
