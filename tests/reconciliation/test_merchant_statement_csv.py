"""The merchant statement's CSV (admin, finance) with real sandbox payments over
HTTP, a refund, settlement and a paid payout (review 14a)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal, InvalidOperation

import pytest
from django.utils import timezone

from payera.staff.access import staff_grant_merchant
from tests.backoffice.staff import make_staff, otp_force_login
from tests.reconciliation.test_merchant_statement import URL, _paid_out_merchant

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_statements_negative_decimal_amounts_stay_numbers(client, psp_settings):
    """docs/backoffice.md "CSV exports": a text cell starting with `=`, `+`, `-`, `@` ... gets a
    leading `'`; "negative numbers stay numbers".

    What was wrong: the merchant statement's `amount` column is the decimal form of the amount
    (`minor_to_decimal_string`: "-10.00"). `csv_response`'s `_safe`
    (reconciliation/admin_reports.py) kept a leading `-` only for `value.lstrip("-").isdigit()`,
    i.e. integers: every negative decimal amount of the statement (the refund, its fee, the
    settlement out of pending, the payout) is written `'-10.00`, text. Opened in a spreadsheet,
    the `amount` column's negatives are strings that SUM skips, so the statement no longer adds
    up to its closing balance (the refund and the payout vanish from the totals). What holds now:
    `reconciliation.exports.csv_safe` keeps a plain number (optional sign, digits, optional
    decimal part) as it is; every `amount` cell is a number equal to `amount_minor` in major units."""
    merchant, *_ = _paid_out_merchant()
    user = make_staff("fin", role="finance")
    staff_grant_merchant(user=user, merchant_id=merchant.id)
    otp_force_login(client, user)
    today = timezone.now().date()
    response = client.post(URL, {"merchant": merchant.id, "start": today - timedelta(days=1), "end": today})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv"), response.content[:300]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert any(int(r["amount_minor"]) < 0 for r in rows), "the refund and the payout are negative"
    not_numbers = []
    for r in rows:
        try:
            ok = Decimal(r["amount"]) * 100 == int(r["amount_minor"])
        except InvalidOperation:
            ok = False
        if not ok:
            not_numbers.append((r["type"], r["amount"], r["amount_minor"]))
    assert not_numbers == []


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("-111.09", "-111.09"),
        ("-11109", "-11109"),
        ("+5.5", "+5.5"),
        ("0.00", "0.00"),
        ("-1+1", "'-1+1"),
        ("-2.5E3", "'-2.5E3"),
        ("-1.", "'-1."),
        ("=1+2", "'=1+2"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-HYPERLINK(1)", "'-HYPERLINK(1)"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r-1", "'\r-1"),
        ("-1\n=2", "'-1\n=2"),
    ],
)
def test_numbers_stay_numbers_and_formulas_stay_inert(cell, written):
    from reconciliation.exports import csv_safe

    assert csv_safe(cell) == written


def test_a_statement_ending_on_the_last_day_of_the_calendar_is_refused_not_a_server_error(client, db):
    """What was wrong: the statement form (reconciliation/admin.py `StatementForm`) accepted any
    date, and the view takes the period's end as the day after its last day: 9999-12-31 (a typo,
    or "until further notice") raised OverflowError, a 500 for finance. What holds now: the form
    refuses a last day with no day after it, the page shows the error."""
    from tests.merchants.factories import MerchantFactory

    merchant = MerchantFactory(connectors=["alpha"])
    user = make_staff("fin", role="finance")
    staff_grant_merchant(user=user, merchant_id=merchant.id)
    otp_force_login(client, user)
    response = client.post(URL, {"merchant": merchant.id, "start": "2026-01-01", "end": "9999-12-31"})
    assert response.status_code == 200 and not response["Content-Type"].startswith("text/csv")
    assert "The period must end before 9999-12-31." in response.content.decode()
