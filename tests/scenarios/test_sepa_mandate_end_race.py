"""A bank return ending a SEPA mandate and the merchant's detach of its method, concurrently
(review r16a of b3f19f6): `mandate_end` locks the still-active mandate row, so whichever commits
second finds it ended and sends nothing — `payment_method.mandate_inactive` goes out once, with
the reason of the ending that won. Coverage: both orders are exercised on two PostgreSQL
connections (the return's transaction held open while the detach waits on the row)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from payments.models import PaymentMethod, SepaMandate
from payments.services.methods import mandate_end_by_code
from tests.scenarios.test_sepa_mandate_checks import saved_sepa
from tests.scenarios.test_sepa_mandate_revocation import mandate_events

pytestmark = [pytest.mark.scenario]


@pytest.mark.skipif(connection.vendor == "sqlite", reason="two connections: PostgreSQL row locks")
def test_a_return_and_a_detach_at_once_end_the_mandate_with_one_event(env):
    cus, pm = saved_sepa(env, "race@example.com")
    ended, release = threading.Event(), threading.Event()
    result: dict = {}

    def bank_return():  # the return's transaction ends the mandate and stays open
        try:
            with transaction.atomic():
                result["return"] = mandate_end_by_code(
                    pm=PaymentMethod.objects.get(pk=pm), code="MD01", what="debit returned"
                )
                ended.set()
                release.wait(10)
        finally:
            connection.close()

    t = threading.Thread(target=bank_return)
    t.start()
    assert ended.wait(10)
    waiter = threading.Thread(
        target=lambda: result.setdefault("detach", env.http.post(f"/v1/payment_methods/{pm}/detach", json={}))
    )
    waiter.start()
    waiter.join(1.0)
    assert waiter.is_alive()  # the detach waits on the mandate's row lock
    release.set()
    t.join(10)
    waiter.join(10)
    assert result["return"] is True and result["detach"].status_code == 200, result["detach"].text
    row = SepaMandate.objects.get(payment_method_id=pm)
    assert row.status == "inactive" and row.inactive_reason == "debit returned: MD01"
    (event,) = mandate_events(env, pm)
    assert event["sepa_debit"]["mandate_inactive_reason"] == "debit returned: MD01"
