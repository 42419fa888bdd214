"""The discrepancy actions are staff actions (docs/backoffice.md "Actions: a reason, a permission,
a service").

What was wrong: *Start investigating*, *Resolve* (an adjustment posts a journal), *Settle as
reported* (books the line's money), *Write off* (what is receivable becomes a loss) and *Move money
out of suspense* asked for a reason, but wrote no `StaffAction` row: none of them showed in the
staff actions' log with the others that move money, and a refusal (a discrepancy already closed,
an adjustment out of bounds) was nowhere at all. What holds now: each run, per selected
discrepancy, records who, the action, the discrepancy, its merchant, the reason (account numbers
masked) and the outcome (`done`, or `refused` with the service's answer)."""

from __future__ import annotations

import pytest

from payera.backoffice.models import StaffAction
from tests.backoffice.staff import make_staff, otp_force_login
from tests.reconciliation.test_reconcile_admin import DSC, with_discrepancies

pytestmark = pytest.mark.django_db(transaction=True)


def _act(client, action: str, pk: int, reason: str, **fields) -> None:
    client.post(DSC, {"action": action, "_selected_action": [pk], "reason": reason, "apply": "1", **fields})


def test_discrepancy_transitions_are_logged_with_their_outcome(client, a_day_of_payments):
    run = with_discrepancies()
    d = run.discrepancies.get(kind="missing_at_psp")
    root = make_staff("root", superuser=True)
    otp_force_login(client, root)
    _act(client, "investigate", d.pk, "asked alpha, ticket 77")
    _act(client, "write_off", d.pk, "alpha will never pay it: card 4111111111111111")
    _act(client, "write_off", d.pk, "again by mistake")  # closed already: refused
    d.refresh_from_db()
    assert d.status == "written_off"
    logged = list(StaffAction.objects.filter(object_id=str(d.pk)).order_by("pk"))
    assert [(s.action, s.outcome) for s in logged] == [
        ("reconciliation.discrepancy_investigate", "done"),
        ("reconciliation.discrepancy_write_off", "done"),
        ("reconciliation.discrepancy_write_off", "refused"),
    ]
    assert {(s.user_id, s.object_type, s.merchant_id) for s in logged} == {
        (root.pk, "reconciliation.discrepancy", d.merchant_id)
    }
    assert logged[1].reason == "alpha will never pay it: card 411111******1111"
    assert logged[2].detail  # the service's answer


def test_a_suspense_move_is_logged(client, a_day_of_payments):
    """A refused move (nothing in suspense for a "missing at PSP") is logged refused as well."""
    run = with_discrepancies()
    d = run.discrepancies.get(kind="missing_at_psp")
    otp_force_login(client, make_staff("root", superuser=True))
    _act(client, "reallocate_suspense", d.pk, "the merchant's money", to="merchant",
         merchant_id=d.merchant_id, currency="EUR", move="1")  # fmt: skip
    [logged] = StaffAction.objects.filter(object_id=str(d.pk))
    assert (logged.action, logged.outcome) == ("reconciliation.discrepancy_reallocate_suspense", "refused")


def test_a_reason_of_fewer_than_5_characters_is_asked_again(client, a_day_of_payments):
    """What was wrong: the discrepancy actions' reason took any non-blank text ("ok", "x"), unlike
    every other back-office action (a reason of 5+ characters): a write-off went through with a
    reason that says nothing. Now the page comes back with the form's error, nothing done."""
    run = with_discrepancies()
    d = run.discrepancies.get(kind="missing_at_psp")
    otp_force_login(client, make_staff("root", superuser=True))
    page = client.post(DSC, {"action": "write_off", "_selected_action": [d.pk], "reason": "ok", "apply": "1"})
    assert page.status_code == 200 and b"at least 5 characters" in page.content
    d.refresh_from_db()
    assert d.status == "open" and not StaffAction.objects.exists()
