"""SEPA mandates and currencies checked wherever a saved SEPA method is about to be debited (beta
sandbox over real HTTP, PostgreSQL, Redis). From review 14b.

What was wrong:
- A revoked (inactive) mandate was refused only by `POST /v1/payments`: a payment created with
  `confirm: false` before the revocation was confirmed later with no mandate check (`_confirm_plan`
  looked at detached methods only) and debited at beta under the revoked mandate, since
  `method_psp_data` sent the method's first mandate row whatever its status. An idempotent replay of
  such a payment (`_payment_replay`) swallowed the refusal and left it unconfirmed.
- `POST /v1/subscriptions` (and `POST /v1/subscriptions/{id}` with `payment_method`) never asked
  whether the method's type takes the subscription's currency: a saved SEPA method (EUR only) on a
  USD subscription answered 201 `unpaid`, its first charge recorded as a hard decline, with
  `subscription.created`/`payment_failed`/`unpaid` sent for a subscription that could never charge.

What holds now: one mandate check (`payments.services.methods.method_mandate`) runs at create,
create-and-confirm, a later confirm, a replay, off-session and subscription charges, and in
`method_psp_data` itself (an inactive mandate is never sent; a revocation racing a confirmation
fails its attempt without a PSP call); one currency check (`payments.method_types.
method_currency_check`) serves payments and subscriptions (create and update): 400 before anything
is written."""

from __future__ import annotations

import pytest

from payera.events.models import Event
from payments.models import Payment, PaymentAttempt, SepaMandate, Subscription
from payments.services.methods import MandateInactiveError
from payments.services.payments import _confirm_attempts, _confirm_begin, payment_create
from psp_adapters.errors import PspReferenceNotFoundError
from psp_adapters.port import PspReference
from psp_adapters.registry import get_adapter
from tests.scenarios.test_apm import create, sepa

pytestmark = [pytest.mark.scenario]


def saved_sepa(env, email: str = "mandate@example.com") -> tuple[str, str]:
    """A customer and its SEPA method saved by a settled customer-present debit."""
    cus = env.post("/v1/customers", {"email": email}, expect=201)
    first = create(env, sepa(), customer=cus["id"], setup_future_usage="off_session")
    first = env.wait(first["id"], lambda p: p["status"] == "succeeded")
    return cus["id"], first["payment_method"]["id"]


def revoke(pm: str) -> None:
    SepaMandate.objects.filter(payment_method_id=pm).update(status="inactive")  # as test_apm models it


def test_confirm_of_a_saved_sepa_payment_refuses_a_mandate_revoked_after_it_was_created(env):
    cus, pm = saved_sepa(env)
    later = create(env, None, amount=900, customer=cus, payment_method=pm, off_session=True, confirm=False)
    assert later["status"] == "requires_confirmation", later
    revoke(pm)
    r = env.http.post(f"/v1/payments/{later['id']}/confirm", json={})
    attempts = list(PaymentAttempt.objects.filter(payment_id=later["id"]).values_list("id", "connector"))
    assert r.status_code == 400, (r.status_code, r.text, attempts)
    assert r.json()["error"]["code"] == "mandate_inactive"
    assert attempts == []
    payment = Payment.objects.get(pk=later["id"])
    assert (payment.status, payment.inflight) == ("requires_confirmation", "")


def test_a_replayed_create_of_an_unconfirmed_payment_refuses_a_revoked_mandate(env):
    """An internal idempotency key (the subscription scheduler's) whose payment was never confirmed:
    the replay confirms it only through the mandate check, and its refusal reaches the caller."""
    cus, pm = saved_sepa(env)
    args = {"merchant": env.merchant, "amount": 800, "currency": "EUR", "customer": cus, "payment_method": pm,
            "off_session": True, "idempotency_key": "replay-mandate-1"}
    first = payment_create(**args, confirm=False)
    assert first.status == "requires_confirmation"
    revoke(pm)
    with pytest.raises(MandateInactiveError):
        payment_create(**args)
    assert Payment.objects.filter(merchant=env.merchant, idempotency_key="replay-mandate-1").count() == 1
    assert not PaymentAttempt.objects.filter(payment_id=first.id).exists()


def test_a_mandate_revoked_while_a_confirmation_is_under_way_is_never_sent(env):
    """Defence in depth: the revocation commits after `_confirm_begin` checked the mandate and
    committed the first attempt, before the PSP call. `method_psp_data` reads the mandate again:
    the attempt fails without reaching beta, the payment fails `mandate_inactive` and the
    confirmation answers that error (as a detach in the same window answers `payment_method_detached`)."""
    cus, pm = saved_sepa(env)
    later = create(env, None, amount=900, customer=cus, payment_method=pm, off_session=True, confirm=False)
    plan, first = _confirm_begin(merchant=env.merchant, payment_id=later["id"], actor="test")
    revoke(pm)
    payment = Payment.objects.select_related("payment_method").get(pk=later["id"])
    with pytest.raises(MandateInactiveError):  # the API answers it (400, stored for the key: work began)
        _confirm_attempts(merchant=env.merchant, payment=payment, plan=plan, first=first, method=None, actor="test")
    answer = Payment.objects.get(pk=later["id"])
    assert (answer.status, answer.last_error["code"], answer.inflight) == ("failed", "mandate_inactive", "")
    attempt = PaymentAttempt.objects.get(pk=first.id)
    assert attempt.status == "failed" and attempt.error.startswith("mandate_inactive")
    with pytest.raises(PspReferenceNotFoundError):  # beta never received it
        get_adapter("beta").inquire(PspReference(reference=first.id))
    assert Event.objects.filter(merchant_id=env.merchant.id, type="payment.failed").count() == 1


def test_a_subscription_in_a_currency_its_saved_sepa_method_cannot_take_is_refused_before_anything_is_written(env):
    cus, pm = saved_sepa(env, "usd@example.com")
    r = env.http.post("/v1/subscriptions", json={"customer": cus, "payment_method": pm, "amount": 700,
                                                 "currency": "USD", "interval": "month"})
    stored = list(Subscription.objects.filter(customer_id=cus).values_list("id", "status"))
    assert r.status_code == 400, (r.status_code, r.text, stored)
    assert (r.json()["error"]["code"], r.json()["error"]["param"]) == ("payment_method_unsupported", "currency")
    assert stored == []
    assert not Event.objects.filter(merchant_id=env.merchant.id, type__startswith="subscription.").exists()


def test_a_subscription_cannot_be_moved_to_a_method_that_cannot_take_its_currency(env):
    cus, sepa_pm = saved_sepa(env, "move@example.com")
    card = env.pay(amount=500, currency="USD", customer=cus, setup_future_usage="off_session")
    assert card["status"] == "succeeded", card
    sub = env.post("/v1/subscriptions", {"customer": cus, "payment_method": card["payment_method"]["id"],
                                         "amount": 700, "currency": "USD", "interval": "month"}, expect=201)
    assert sub["status"] == "active", sub
    r = env.http.post(f"/v1/subscriptions/{sub['id']}", json={"payment_method": sepa_pm})
    assert r.status_code == 400, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["param"]) == ("payment_method_unsupported", "currency")
    assert Subscription.objects.get(pk=sub["id"]).payment_method_id == card["payment_method"]["id"]
    assert not Event.objects.filter(merchant_id=env.merchant.id, type="subscription.updated").exists()


def test_a_subscription_on_a_revoked_mandate_is_refused_and_its_charges_stop(env):
    """Create refuses it (`mandate_inactive`, nothing stored); a subscription whose mandate is
    revoked later is charged no more: the scheduler's charge is refused before any PSP call."""
    from payments.recurring import add_months
    from payments.services import subscriptions_run

    cus, pm = saved_sepa(env, "revoked@example.com")
    sub = env.post("/v1/subscriptions", {"customer": cus, "payment_method": pm, "amount": 700, "currency": "EUR",
                                         "interval": "month"}, expect=201)
    charges = Payment.objects.filter(merchant=env.merchant, off_session=True, payment_method_id=pm)
    env.wait(charges.get().id, lambda p: p["status"] == "succeeded")
    subscriptions_run()  # settles the first charge
    revoke(pm)
    r = env.http.post("/v1/subscriptions", json={"customer": cus, "payment_method": pm, "amount": 700,
                                                 "currency": "EUR", "interval": "month"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "mandate_inactive", r.text
    assert Subscription.objects.filter(customer_id=cus).count() == 1
    subscriptions_run(now_=add_months(Subscription.objects.get(pk=sub["id"]).anchor, 1))
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.status, row.last_decline_code) == ("unpaid", "mandate_inactive")
    assert charges.count() == 1  # no second debit was even created
