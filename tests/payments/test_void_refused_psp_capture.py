"""A plain payment's cancel whose void the PSP refuses at once because it captured the authorization
on its own (its webhook lost): the merchant's cancel (POST /v1/payments/{id}/cancel) and the
7-day authorization expiry. Nothing asked the PSP why: the payment stayed `requires_capture` until
a webhook or reconciliation's settlement inquiry, and the expiry sent a new void of a captured
authorization on every run. Now `payment_cancel` asks the PSP (outside any transaction) when the
PSP refuses its void, as the booking expiry does, and records the capture it reports: captured
once, `payment.cancel_failed` once, the merchant's cancel still answered with the refusal.

The PSP is the stand-in alpha over HTTP (tests/payments/standin_alpha.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from payera.events.models import Event
from payments.models import Payment
from payments.services import payment_expire_authorizations
from tests.conftest import client_for
from tests.merchants.factories import make_api_key
from tests.payments.standin_alpha import authorized_at_standin
from tests.payments.test_psp_initiated_capture import _assert_captured_once


def _told_once(merchant) -> None:
    types = list(Event.objects.filter(merchant_id=merchant.id).values_list("type", flat=True))
    assert types.count("payment.cancel_failed") == 1 and types.count("payment.succeeded") == 1
    assert "payment.canceled" not in types


@pytest.mark.django_db
def test_a_merchant_cancel_refused_for_the_psps_own_capture_records_it(psp_settings, settings):
    with authorized_at_standin(settings) as (merchant, psp, payment):
        psp.psp_capture(payment.attempts.get().id)  # no webhook reaches Payera
        client = client_for(make_api_key(merchant).secret)

        r = client.post(f"/v1/payments/{payment.id}/cancel", {}, format="json")
        assert (r.status_code, r.json()["error"]["code"]) == (502, "psp_request_rejected")  # as before
        _assert_captured_once(payment.id, merchant, 1000)
        assert Payment.objects.get(pk=payment.id).inflight == ""
        _told_once(merchant)

        r = client.post(f"/v1/payments/{payment.id}/cancel", {}, format="json")  # captured: refund instead
        assert (r.status_code, r.json()["error"]["code"]) == (400, "payment_not_cancelable")
        assert len(psp.void_references) == 1
        _told_once(merchant)


@pytest.mark.django_db
def test_the_authorization_expiry_refused_for_the_psps_own_capture_records_it(psp_settings, settings):
    with authorized_at_standin(settings) as (merchant, psp, payment):
        psp.psp_capture(payment.attempts.get().id, amount=700)  # partial, on its own; no webhook
        Payment.objects.filter(pk=payment.pk).update(authorized_at=timezone.now() - dt.timedelta(days=8))

        for _ in range(2):  # two expiry runs
            assert payment_expire_authorizations() == []
        _assert_captured_once(payment.id, merchant, 700)
        assert Payment.objects.get(pk=payment.id).inflight == ""
        assert len(psp.void_references) == 1  # one void, refused: not sent again
        _told_once(merchant)


@pytest.mark.django_db
def test_a_refused_void_of_an_authorization_still_held_changes_nothing_else(psp_settings, settings):
    """The PSP refuses the void and still holds the authorization (not captured): the inquiry
    records nothing, the claim is released, the merchant may capture at once; no event."""
    from payments.services import payment_capture

    with authorized_at_standin(settings, voids=("refuse",)) as (merchant, psp, payment):
        r = client_for(make_api_key(merchant).secret).post(f"/v1/payments/{payment.id}/cancel", {}, format="json")
        assert (r.status_code, r.json()["error"]["code"]) == (400, "cancel_failed")
        assert Payment.objects.values_list("status", "inflight").get(pk=payment.id) == ("requires_capture", "")
        assert not Event.objects.filter(merchant_id=merchant.id, type="payment.cancel_failed").exists()
        assert payment_capture(merchant=merchant, payment_id=payment.id).status == "succeeded"
        _assert_captured_once(payment.id, merchant, 1000)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("run", range(3))
def test_a_refused_cancel_racing_the_capture_webhook_records_it_once(psp_settings, settings, run):
    """The merchant's cancel (its void refused: captured) and the PSP's capture webhook, in real
    threads against PostgreSQL: one capture, one journal, `payment.cancel_failed` once when the
    cancel reached the PSP (none when the webhook recorded the capture first: Payera refused the
    cancel itself), never twice."""
    from payments.services.payments import payment_cancel
    from payments.services.webhooks import psp_webhook_process
    from tests.helpers import race
    from tests.payments.standin_alpha import alpha_webhook

    secret = psp_settings["alpha"].webhook_secret
    with authorized_at_standin(settings) as (merchant, psp, payment):
        auth = psp.psp_capture(payment.attempts.get().id)
        row = alpha_webhook(secret, f"evt_cap_{run}", "authorization.updated", auth).pk
        errors = []

        def cancel():
            try:
                payment_cancel(merchant=merchant, payment_id=payment.id)
            except Exception as exc:  # noqa: BLE001 - the refusal is the expected answer
                errors.append(exc.code)

        todo = [cancel, lambda: psp_webhook_process(webhook_id=row)]
        race(len(todo), lambda: todo.pop()())
        _assert_captured_once(payment.id, merchant, 1000)
        assert Payment.objects.get(pk=payment.id).inflight == ""
        assert errors in (["psp_request_rejected"], ["payment_not_cancelable"])
        told = Event.objects.filter(merchant_id=merchant.id, type="payment.cancel_failed").count()
        assert told == (1 if psp.void_references else 0)
