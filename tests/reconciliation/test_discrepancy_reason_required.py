"""Every discrepancy action that moves money asks for a real reason, at the service too
(docs/backoffice.md "Actions: a reason, a permission, a service").

What was wrong: the admin's discrepancy forms asked for 5+ characters (their own copies of the
back office's ReasonForm), but the services behind them (`discrepancy_resolve` with an adjustment,
`discrepancy_settle_as_reported`, `discrepancy_write_off`, `suspense_reallocate`, and
`discrepancy_investigate`) took any non-blank text: a write-off called from a shell, a command or a
future API booked a loss with the reason "x", which the journal's memo keeps for good. Now they
refuse a reason of fewer than 5 characters (the back office's minimum, REASON_MIN_LENGTH) with 400
`parameter_invalid`-style `invalid_request_error` on `reason`, and nothing moves; the admin's forms
are the shared ReasonForm."""

from __future__ import annotations

import pytest

from ledger.models import Journal
from payera.core.errors import InvalidRequestError
from reconciliation.services import (
    discrepancy_investigate,
    discrepancy_resolve,
    discrepancy_settle_as_reported,
    discrepancy_write_off,
    suspense_reallocate,
)
from tests.backoffice.staff import make_staff
from tests.reconciliation.test_reconcile_admin import with_discrepancies

pytestmark = pytest.mark.django_db(transaction=True)


def test_money_moving_discrepancy_services_refuse_a_reason_that_says_nothing(a_day_of_payments):
    run = with_discrepancies()
    d = run.discrepancies.get(kind="missing_at_psp")
    root = make_staff("root", superuser=True)
    journals = Journal.objects.count()
    calls = [
        lambda reason: discrepancy_write_off(discrepancy_id=d.pk, user=root, reason=reason),
        lambda reason: discrepancy_settle_as_reported(discrepancy_id=d.pk, user=root, reason=reason),
        lambda reason: discrepancy_resolve(
            discrepancy_id=d.pk, user=root, reason=reason, adjustment=100, currency="EUR"
        ),
        lambda reason: suspense_reallocate(
            discrepancy_id=d.pk,
            user=root,
            reason=reason,
            to="merchant",
            merchant_id=d.merchant_id,
            currency="EUR",
            move=1,
        ),
        lambda reason: discrepancy_investigate(discrepancy_id=d.pk, user=root, reason=reason),
    ]
    for call in calls:
        for reason in ("x", "ok", "  ab  ", "a  b"):
            with pytest.raises(InvalidRequestError) as exc:
                call(reason)
            assert exc.value.param == "reason" and "5 characters" in exc.value.message
    d.refresh_from_db()
    assert d.status == "open" and Journal.objects.count() == journals
    discrepancy_write_off(discrepancy_id=d.pk, user=root, reason="alpha will never pay it")
    d.refresh_from_db()
    assert d.status == "written_off"


def test_the_discrepancy_admin_forms_are_the_shared_reason_form():
    from payera.backoffice.actions import ReasonForm
    from reconciliation import admin_reports

    for form in (admin_reports.DiscrepancyActionForm, admin_reports.SuspenseForm):
        assert issubclass(form, ReasonForm)
        assert not form({"reason": "ok", "currency": "EUR", "to": "merchant", "move": 1}).is_valid()
