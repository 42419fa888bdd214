"""A subscription's SEPA debit returned with a reason code other than MD06/AM04.

Before: beta's adapter mapped only MD06 and AM04 to the dispute reason `debit_returned`; a return
with MD01 (no valid mandate), AC04 (account closed), AC06 (account blocked) or MD07 (debtor
deceased) became a dispute `general`, so the subscription never heard of it: still `active`, the
period counted as paid though the bank took the money back, and nothing collected it again.

Now every SEPA return is a returned debit (docs/payments.md "Subscriptions"): the period it paid
is reopened (the charge `returned`, `current_period` back on it). For these four codes the bank
says the mandate or the account can never be debited again: the mandate ends (`reusable: false`)
and, since no retry of that method could pass, the subscription goes `unpaid` at once
(`last_error.code` `debit_returned`, `decline_code` the bank's code): no dunning debit is tried
against the closed account, and it waits for a new payment method (the resume path), which
charges the reopened period. MD06 keeps its dunning on the same mandate (past_due).

The returns are beta's own CHARGEBACK notifications (the sandbox's NL39RABO0300065264 return),
held back at the sandbox, with the reason code the bank would give, parsed by beta's adapter and
applied through the webhook worker's service (as tests/scenarios/test_sepa_mandate_returns.py)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from payments.models import Dispute, Payment, SepaMandate, Subscription
from payments.services import dispute_apply_event
from psp_adapters.beta.webhooks import sign
from psp_adapters.registry import get_adapter
from tests.scenarios.conftest import assert_ledger_sound
from tests.scenarios.test_apm import GOOD, create, deliver, events_of, sepa, wait_for
from tests.scenarios.test_subscription_debit_returned import charge_of, daily_with_its_first_period_paid
from tests.scenarios.test_subscriptions import events, tick

pytestmark = [pytest.mark.scenario]


def return_with(env, sb, attempt_id: str, code: str) -> None:
    """Beta's held return of the attempt's debit, as the bank would send it with `code`: beta's
    signed CHARGEBACK body with that reason code, parsed by beta's adapter (its reason mapping) and
    applied by the service the webhook worker calls (the sandbox's own dispute inquiry would answer
    MD06, the only return its bank makes)."""
    wait_for(lambda: events_of(sb, attempt_id, "dispute"))
    (event,) = events_of(sb, attempt_id, "dispute")
    body = json.loads(event["body"])
    assert body["reasonCode"] == "MD06"  # what the sandbox's bank gives
    body["reasonCode"], body["reason"] = code, f"SEPA return {code}"
    raw = json.dumps(body).encode()
    parsed = get_adapter("beta").parse_webhook(body=raw, headers={"Beta-Signature": sign(raw, sb.webhook_secret)})
    assert parsed.dispute.reason == ("general" if code == "AM05" else "debit_returned"), parsed.dispute
    assert dispute_apply_event(connector="beta", event=parsed, actor="psp:beta").startswith("dispute: created")


@pytest.mark.parametrize("code", ["MD01", "AC04", "AC06", "MD07"])
def test_a_return_that_ends_the_mandate_reopens_the_period_and_waits_for_a_new_method(env, held, code):
    cus, pm, sub, t0 = daily_with_its_first_period_paid(env, held)
    paid = charge_of(sub["id"], 0)
    return_with(env, held, paid.payment.attempts.get().id, code)

    dispute = Dispute.objects.get(payment_id=paid.payment_id)
    assert (dispute.reason, dispute.psp_reason) == ("debit_returned", code)
    assert charge_of(sub["id"], 0).status == "returned"
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period, row.next_charge_at) == ("unpaid", 0, None)
    assert row.last_decline_code == "debit_returned"
    assert row.last_error["code"] == "debit_returned" and row.last_error["decline_code"] == code
    assert events(env, sub["id"])[-1] == "subscription.unpaid"
    assert SepaMandate.objects.get(payment_method_id=pm).status == "inactive"
    assert env.http.get(f"/v1/payment_methods/{pm}").json()["reusable"] is False

    for day in (1, 3, 5, 7):  # no dunning debit against the closed account
        tick(t0 + dt.timedelta(days=day, seconds=5))
    assert Payment.objects.filter(payment_method_id=pm, off_session=True).count() == 1

    first = create(env, sepa(GOOD), customer=cus, setup_future_usage="off_session")  # a new mandate
    att = first["attempts"][0]["id"]
    wait_for(lambda: events_of(held, att, "authorization"))
    deliver(env, held, events_of(held, att, "authorization"))
    first = env.wait(first["id"], lambda p: p["status"] == "succeeded")
    # resumed (now, within period 0): the reopened period is charged with the new mandate
    r = env.post(f"/v1/subscriptions/{sub['id']}", {"payment_method": first["payment_method"]["id"]})
    assert r["status"] in ("past_due", "active"), r
    assert charge_of(sub["id"], 0, 1).payment.payment_method_id == first["payment_method"]["id"]
    assert_ledger_sound()


@pytest.mark.parametrize("code", ["MD06", "AM05"])
def test_a_return_that_keeps_the_mandate_is_dunned_on_the_same_mandate(env, held, code):
    """MD06 (the debtor's refund) and a code beta's adapter does not map (AM05, a duplicate: a
    dispute `general` from the adapter, opened `debit_returned` since a SEPA debit has no other
    kind) reopen the period on the dunning schedule, the mandate kept."""
    _, pm, sub, _ = daily_with_its_first_period_paid(env, held)
    paid = charge_of(sub["id"], 0)
    return_with(env, held, paid.payment.attempts.get().id, code)
    assert Dispute.objects.get(payment_id=paid.payment_id).reason == "debit_returned"
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.current_period, row.retries) == ("past_due", 0, 1)
    assert row.last_error["decline_code"] == code
    assert SepaMandate.objects.get(payment_method_id=pm).status == "active"
    tick(row.next_charge_at)
    assert charge_of(sub["id"], 0, 1).payment.payment_method_id == pm  # the retry debits the same mandate
